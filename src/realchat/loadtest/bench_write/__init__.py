"""`realchat bench write`: send throughput and latency, with pgbench as the ceiling.

Why pgbench: before group commit a send was one SQL statement (`SINGLE_MESSAGE_SQL`, in
`pgbench.py`) under the conversation's row lock. pgbench runs that very statement with nothing in
front of it (no gRPC, no Python, no pool), on the same database in the same run, so
`ours / pgbench` says how far batching takes the service beyond one statement per transaction.
Two scenarios (`scenarios.py`) bracket real traffic: one hot conversation (every writer queues
on one row lock, each commit waits for its own WAL fsync) and 1,000 conversations (writers
rarely meet and their commits share fsyncs).

Each scenario measures these paths (`measure.py`), one after the other, on freshly truncated
tables: `grpc` (the real `realchat chat-service` process, called through the gateway's own chat
client, which gathers concurrent sends into SendMessageBatch calls: the headline figure),
`grpc-unary` (one SendMessage call per send), `grpc-stream` (SendMessages, one stream per
caller), `service` (`ChatService.send_message` in this process: the cost without the transport),
all in `paths.py`, and `pgbench` and `pgbench-pool`, plus `pgbench-batch` (our own
statement run by pgbench with full batches: what PostgreSQL alone does with our writes). All
run a closed loop (`driver.py`) with the same number of callers; only completions inside the
same measurement window (after a warm-up) count. `cpu.py` accounts CPU time per process role
(read through `loadtest.procfs`), `results.py` holds the figures, `render.py` the table,
`command.py` the command.
"""
