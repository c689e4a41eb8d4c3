"""The contracts every layer shares, below the simulator and the runtime: the Task protocol and batch keys,
the trace and its typed rows, the protocol specification and state machine, samplers, the server update,
Downpour's local step, run keys and the health verdicts."""
