"""The Mesos scheduler backend: the engine as a Mesos framework (reference §7).

settings.py reads the `backend:` and `mesos:` settings of nutshell.yaml;
framework.py bridges pymesos' driver threads and the engine's event loop;
offer_book.py turns held Mesos offers into the shared Offer records, and
offer_holder.py holds them only while a deployment may want them;
launcher.py launches placed tasks (one ACCEPT per agent, offers checked again);
task_info.py builds ExecutorInfo and TaskInfo; task_book.py knows our tasks and
what their statuses mean; master_agents.py, cluster_view.py and sandbox_log.py read
the master's and the agents' HTTP endpoints (agents, the hosts view, task logs);
pool.py is the pool the environment manager uses (the surface of LocalAgentPool)
and agent_client.py its per-agent client; backend.py picks the backend.
"""
