"""``jobdock agent``: a worker on another machine that reaches the server
over HTTP(S) with an agent token, never its store (docs/agents.md).

- ``remote_store.py``: the worker's side of the store, as calls of the
  server's agent routes (api/agent.py);
- ``output.py``: an attempt's output on its way, buffered while the server
  is away;
- ``runner.py``: the engines and the one Worker on that store, until SIGTERM.
"""
