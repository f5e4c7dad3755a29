"""The Hub side: pushing a run (``push``), and a local Hub-compatible server (``server``, ``storage``, ``transfer``,
with what server and transfer share in ``protocol``)."""
