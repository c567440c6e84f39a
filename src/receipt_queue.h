/* receipt_queue.h - group commit of query receipts.
 *
 * A query's receipt must be durable before its answer leaves (docs/audit.md). Committing each
 * receipt in its own transaction costs one WAL write of every page it touches (the event's
 * table and indexes, the receipt, the disclosure index, the usage rollups): ~35 pages per
 * query. Here concurrent queries share one transaction: the first caller that finds no commit
 * in progress becomes the leader, takes every receipt queued so far, appends them on the
 * queue's own connection (its page cache stays warm: it is the only steady writer) in one
 * BEGIN IMMEDIATE ... COMMIT, and wakes their callers; receipts queued meanwhile form the next
 * group. Each receipt is appended inside its own savepoint, so one that fails is rolled back
 * alone and only its caller gets the error; a failed COMMIT fails the whole group. No caller
 * returns before the transaction holding its receipt has committed.
 *
 * Thread: rq_commit may be called from any number of threads at once. */
#ifndef STW_RECEIPT_QUEUE_H
#define STW_RECEIPT_QUEUE_H

#include "audit.h"
#include "store.h"

struct rqueue;

/* Owned: rq_close(). Opens one extra connection on st. */
stw_code rq_open(struct store *st, struct rqueue **out, stw_error *err);
void rq_close(struct rqueue *q);

/* Append r (audit_record_query) and return once it is committed, or with the error that kept
 * it out of the trail. r's strings are only read during the call. */
stw_code rq_commit(struct rqueue *q, const struct audit_receipt *r, stw_error *err);

#endif
