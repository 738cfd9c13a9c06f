"""The transactional outbox: an event is written in the same transaction as the change it
announces (`writer`), and carried to Kafka afterwards by the publisher (`publisher`, its SQL in
`store`), in commit order per partition key, at least once; poison events become dead letters
(`dead_letters`); writers wake the publisher after their commits (`wakeup`)."""
