/* receipt_queue.c - group commit of query receipts (see receipt_queue.h). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "receipt_queue.h"

struct rq_item {
    const struct audit_receipt *rec;
    stw_code rc;
    stw_error err;
    int done;
    struct rq_item *next;
};

struct rqueue {
    sqlite3 *conn;          /* used by the leader only */
    struct stmt_cache stmts; /* conn's statements; leader only */
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* a group committed, or the leader left */
    struct rq_item *head;   /* waiting for the next group; guarded by mu */
    struct rq_item **tail;
    int leading;            /* a leader is writing a group; guarded by mu */
};

stw_code rq_open(struct store *st, struct rqueue **out, stw_error *err)
{
    struct rqueue *q = calloc(1, sizeof *q);
    stw_code rc;

    if (q == NULL)
        return stw_errorf(err, STW_NOMEM, NULL, "out of memory");
    rc = store_open_extra(st, &q->conn, err);
    if (rc != STW_OK) {
        free(q);
        return rc;
    }
    store_cache_init(&q->stmts, q->conn);
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    q->tail = &q->head;
    *out = q;
    return STW_OK;
}

void rq_close(struct rqueue *q)
{
    if (q == NULL)
        return;
    store_cache_clear(&q->stmts);
    sqlite3_close(q->conn);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    free(q);
}

/* One receipt inside the group's transaction, in a savepoint of its own, so that a failure
 * takes back exactly its rows (the chain event included). */
static void write_one(sqlite3 *c, struct stmt_cache *sc, struct rq_item *it)
{
    it->rc = store_exec_cached(sc, c, "SAVEPOINT receipt", &it->err);
    if (it->rc != STW_OK)
        return;
    it->rc = audit_record_query(c, sc, it->rec, &it->err);
    if (it->rc != STW_OK)
        store_exec_cached(sc, c, "ROLLBACK TO receipt", NULL);
    store_exec_cached(sc, c, "RELEASE receipt", NULL);
}

/* Write and commit one group; sets every item's rc/err. Called without the mutex. */
static void write_group(sqlite3 *c, struct stmt_cache *sc, struct rq_item *group)
{
    stw_error err;
    stw_code rc;
    size_t written = 0;

    memset(&err, 0, sizeof err);
    rc = store_exec_cached(sc, c, "BEGIN IMMEDIATE", &err);
    for (struct rq_item *it = group; rc == STW_OK && it != NULL; it = it->next) {
        write_one(c, sc, it);
        if (sqlite3_get_autocommit(c)) {
            /* some errors (full disk, I/O, out of memory) end the whole transaction: the
             * receipts before this one went with it */
            rc = it->rc != STW_OK ? it->rc
                                  : stw_errorf(&err, STW_STORE, "store_error",
                                               "the receipt transaction ended early");
            if (it->rc != STW_OK)
                err = it->err;
            break;
        }
        written += it->rc == STW_OK;
    }
    if (rc == STW_OK)
        rc = written > 0 ? store_exec_cached(sc, c, "COMMIT", &err) : STW_OK;
    store_rollback(c); /* no-op after a commit; nothing of a failed group stays */
    if (rc != STW_OK) {
        for (struct rq_item *it = group; it != NULL; it = it->next) {
            if (it->rc == STW_OK) {
                it->rc = rc;
                it->err = err;
            }
        }
    }
}

stw_code rq_commit(struct rqueue *q, const struct audit_receipt *r, stw_error *err)
{
    struct rq_item me;

    memset(&me, 0, sizeof me);
    me.rec = r;
    pthread_mutex_lock(&q->mu);
    *q->tail = &me;
    q->tail = &me.next;
    while (!me.done) {
        if (!q->leading) {
            struct rq_item *group = q->head, *it;

            q->head = NULL;
            q->tail = &q->head;
            q->leading = 1;
            pthread_mutex_unlock(&q->mu);
            write_group(q->conn, &q->stmts, group);
            pthread_mutex_lock(&q->mu);
            for (it = group; it != NULL;) {
                struct rq_item *next = it->next; /* it may be gone once done is set */
                it->done = 1;
                it = next;
            }
            q->leading = 0;
            pthread_cond_broadcast(&q->cv);
        } else {
            pthread_cond_wait(&q->cv, &q->mu);
        }
    }
    pthread_mutex_unlock(&q->mu);
    if (me.rc != STW_OK && err != NULL)
        *err = me.err;
    return me.rc;
}
