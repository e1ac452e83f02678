"""Networking: the signaling server that introduces two peers, and its asyncio client.

Point clouds and voice go peer-to-peer over WebRTC (aiortc); the signaling server only relays the
few JSON messages (SDP offers and answers, ICE candidates, call control) the peers need to find
each other. See :mod:`holo.net.signaling_server` for the protocol.
"""
