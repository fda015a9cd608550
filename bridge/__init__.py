"""The bridge daemon: serves a trained policy to NinjaTrader 8 over ZeroMQ.

``server`` (sockets, the only zmq import) -> ``dispatch`` (one reply per request) using
``protocol`` (messages), ``session`` (per-client state), ``policy`` (model), ``orders``
(pricing); ``journal`` and ``monitoring`` record each decision after its reply. ``replay``
and ``monitor`` are the client-side tools. See docs/daemon.md and docs/protocol.md.
"""
