/* journal.c - the receipt journal (see journal.h). */
#define _GNU_SOURCE /* pthread_setname_np: the indexer shows as "stw-journal" in top -H, perf */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "journal.h"
#include "limits.h"
#include "util.h"

#define JREC_MAGIC "STJ1"
#define JREC_HEAD  8 /* magic, payload length */
#define JREC_FRAME (JREC_HEAD + SHA256_LEN)
#define JSTR_NONE  0xFFFFFFFFu
#define JREC_HIT_MIN (8 + 8 + 3 * 5 + 3 * 4) /* rank, score, 3 strings >= "" + NUL, 3 none */
#define JSEG_NAME_LEN 12 /* digits of a segment's number: 000000000001.log */

struct jseg {
    uint64_t n;   /* the file's number */
    int fd;
    uint64_t size; /* bytes of whole records */
    int adopted;  /* left by an earlier process: receipts may be stored already, the last
                   * record may be torn */
};

struct journal {
    char dir[4096];
    int lock_fd;
    sqlite3 *conn;           /* the indexer's */
    struct stmt_cache stmts; /* conn's; indexer only */
    pthread_t thread;
    int running;
    pthread_mutex_t mu;
    pthread_cond_t work;     /* appended, or stop */
    pthread_cond_t progress; /* indexed, or the indexer failed */
    /* guarded by mu: */
    struct jseg *segs;       /* segs[0] is being indexed, segs[nsegs - 1] appended to */
    size_t nsegs, cap;
    uint64_t next_n;
    uint64_t off;            /* bytes of segs[0] indexed */
    uint64_t appended, indexed; /* bytes, over all segments since open */
    unsigned long long records, nindexed, batches, skipped;
    double index_s;
    int stop, failing;
    int idle;   /* the indexer waits for an append's signal (else appends do not signal) */
    int urgent; /* readers waiting in journal_sync: no lingering */
    stw_error last;          /* the indexer's last failure */
};

/* ---- records ------------------------------------------------------------------------------ */

/* A record being encoded: in the caller's buffer (on its stack) until it outgrows it. */
struct wbuf {
    unsigned char *p;
    size_t n, cap;
    int oom, heap;
};

static void put(struct wbuf *b, const void *src, size_t len)
{
    if (b->oom)
        return;
    if (b->n + len > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        unsigned char *p;
        while (cap < b->n + len)
            cap *= 2;
        p = b->heap ? realloc(b->p, cap) : malloc(cap);
        if (p == NULL) {
            b->oom = 1;
            return;
        }
        if (!b->heap)
            memcpy(p, b->p, b->n);
        b->p = p;
        b->cap = cap;
        b->heap = 1;
    }
    memcpy(b->p + b->n, src, len);
    b->n += len;
}

static void le_store(unsigned char *x, uint64_t v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t le_load(const unsigned char *x, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)x[i] << (8 * i);
    return v;
}

static void put_u32(struct wbuf *b, uint32_t v)
{
    unsigned char x[4];
    le_store(x, v, 4);
    put(b, x, 4);
}

static void put_u64(struct wbuf *b, uint64_t v)
{
    unsigned char x[8];
    le_store(x, v, 8);
    put(b, x, 8);
}

static void put_f64(struct wbuf *b, double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    put_u64(b, u);
}

static void put_str(struct wbuf *b, const char *s)
{
    size_t len;
    if (s == NULL) {
        put_u32(b, JSTR_NONE);
        return;
    }
    len = strlen(s);
    if (len >= JSTR_NONE) {
        b->oom = 1;
        return;
    }
    put_u32(b, (uint32_t)len);
    put(b, s, len + 1);
}

/* The whole record for r into b (empty on entry). 0, or -1 when out of memory. */
static int rec_encode(struct wbuf *b, const struct audit_receipt *r)
{
    unsigned char digest[SHA256_LEN];

    put(b, JREC_MAGIC, 4);
    put_u32(b, 0); /* the payload's length, below */
    put_u64(b, (uint64_t)r->at_ms);
    put_u64(b, (uint64_t)r->policy_version);
    put_u64(b, (uint64_t)r->k);
    put_u64(b, (uint64_t)r->nhits);
    put_u32(b, (uint32_t)((r->break_glass ? 1 : 0) | (r->text_withheld ? 2 : 0)));
    put_str(b, r->query_id);
    put_str(b, r->principal);
    put_str(b, r->purpose);
    put_str(b, r->reason);
    put_str(b, r->vector_sha256);
    put_str(b, r->filter_json);
    put_str(b, r->versions_json);
    for (size_t i = 0; i < r->nhits; i++) {
        const struct audit_hit *h = &r->hits[i];
        put_u64(b, (uint64_t)h->rank);
        put_f64(b, h->score);
        put_str(b, h->product);
        put_str(b, h->version);
        put_str(b, h->chunk_id);
        put_str(b, h->source_system);
        put_str(b, h->document_id);
        put_str(b, h->subject);
    }
    if (b->oom || b->n - JREC_HEAD > STW_JOURNAL_RECORD_MAX)
        return -1;
    le_store(b->p + 4, b->n - JREC_HEAD, 4);
    util_sha256(b->p + JREC_HEAD, b->n - JREC_HEAD, digest);
    put(b, digest, sizeof digest);
    return b->oom ? -1 : 0;
}

/* A whole record at buf[0, avail): 1 and its length in *len; 0: buf ends inside it (*len is
 * its length once the header is there, else 0); -1: not a record (or its hash is wrong). */
static int rec_frame(const unsigned char *buf, size_t avail, size_t *len)
{
    unsigned char digest[SHA256_LEN];
    uint64_t plen;

    *len = 0;
    if (avail < JREC_HEAD)
        return 0;
    if (memcmp(buf, JREC_MAGIC, 4) != 0)
        return -1;
    plen = le_load(buf + 4, 4);
    if (plen > STW_JOURNAL_RECORD_MAX)
        return -1;
    *len = JREC_FRAME + plen;
    if (avail < *len)
        return 0;
    util_sha256(buf + JREC_HEAD, plen, digest);
    return memcmp(digest, buf + JREC_HEAD + plen, SHA256_LEN) == 0 ? 1 : -1;
}

struct rbuf {
    const unsigned char *p;
    size_t n, pos;
    int bad;
};

static uint64_t get_u(struct rbuf *b, size_t n)
{
    uint64_t v;
    if (b->bad || b->n - b->pos < n) {
        b->bad = 1;
        return 0;
    }
    v = le_load(b->p + b->pos, n);
    b->pos += n;
    return v;
}

static const char *get_str(struct rbuf *b, int nullable)
{
    uint64_t len = get_u(b, 4);
    const char *s;

    if (b->bad || (len == JSTR_NONE && nullable))
        return NULL;
    if (len == JSTR_NONE || b->n - b->pos < len + 1 || b->p[b->pos + len] != '\0' ||
        memchr(b->p + b->pos, '\0', len) != NULL) {
        b->bad = 1;
        return NULL;
    }
    s = (const char *)b->p + b->pos;
    b->pos += len + 1;
    return s;
}

/* The receipt of a framed record (its strings point into rec). *hits grows as needed (owned
 * by the caller). 0, or -1 if the payload does not decode (or out of memory). */
static int rec_decode(const unsigned char *rec, size_t len, struct audit_receipt *r,
                      struct audit_hit **hits, size_t *hcap)
{
    struct rbuf b = {rec + JREC_HEAD, len - JREC_FRAME, 0, 0};
    uint64_t flags, nhits;

    memset(r, 0, sizeof *r);
    r->at_ms = (int64_t)get_u(&b, 8);
    r->policy_version = (int64_t)get_u(&b, 8);
    r->k = (size_t)get_u(&b, 8);
    nhits = get_u(&b, 8);
    flags = get_u(&b, 4);
    r->break_glass = (flags & 1) != 0;
    r->text_withheld = (flags & 2) != 0;
    r->query_id = get_str(&b, 0);
    r->principal = get_str(&b, 0);
    r->purpose = get_str(&b, 0);
    r->reason = get_str(&b, 1);
    r->vector_sha256 = get_str(&b, 0);
    r->filter_json = get_str(&b, 1);
    r->versions_json = get_str(&b, 0);
    if (b.bad || nhits > b.n / JREC_HIT_MIN) /* every hit takes bytes: a huge count is damage */
        return -1;
    if (nhits > *hcap) {
        struct audit_hit *h = realloc(*hits, (size_t)nhits * sizeof *h);
        if (h == NULL)
            return -1;
        *hits = h;
        *hcap = (size_t)nhits;
    }
    for (size_t i = 0; i < nhits; i++) {
        struct audit_hit *h = &(*hits)[i];
        uint64_t score;
        h->rank = (size_t)get_u(&b, 8);
        score = get_u(&b, 8);
        memcpy(&h->score, &score, sizeof h->score);
        h->product = get_str(&b, 0);
        h->version = get_str(&b, 0);
        h->chunk_id = get_str(&b, 0);
        h->source_system = get_str(&b, 1);
        h->document_id = get_str(&b, 1);
        h->subject = get_str(&b, 1);
    }
    r->nhits = (size_t)nhits;
    r->hits = *hits;
    return b.bad || b.pos != b.n ? -1 : 0;
}

/* ---- segments ----------------------------------------------------------------------------- */

static void seg_path(const struct journal *j, uint64_t n, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%0*llu.log", j->dir, JSEG_NAME_LEN, (unsigned long long)n);
}

static int seg_push(struct journal *j, uint64_t n, int fd, uint64_t size, int adopted)
{
    if (j->nsegs == j->cap) {
        size_t cap = j->cap ? 2 * j->cap : 8;
        struct jseg *s = realloc(j->segs, cap * sizeof *s);
        if (s == NULL)
            return -1;
        j->segs = s;
        j->cap = cap;
    }
    j->segs[j->nsegs].n = n;
    j->segs[j->nsegs].fd = fd;
    j->segs[j->nsegs].size = size;
    j->segs[j->nsegs].adopted = adopted;
    j->nsegs++;
    return 0;
}

/* A new segment to append to. Called with mu held. */
static stw_code seg_new(struct journal *j, stw_error *err)
{
    char path[4200];
    int fd, e;

    seg_path(j, j->next_n, path, sizeof path);
    fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || seg_push(j, j->next_n, fd, 0, 0) != 0) {
        e = fd < 0 ? errno : ENOMEM;
        if (fd >= 0) {
            close(fd);
            unlink(path);
        }
        return stw_errorf(err, STW_UNAVAILABLE,
                          e == ENOSPC || e == EDQUOT ? "storage_full" : "audit_unavailable",
                          "cannot create a receipt journal segment: %s", strerror(e));
    }
    j->next_n++;
    return STW_OK;
}

/* segs[0], all of it indexed: gone. Called with mu held. */
static void seg_drop(struct journal *j)
{
    char path[4200];

    seg_path(j, j->segs[0].n, path, sizeof path);
    close(j->segs[0].fd);
    unlink(path);
    memmove(j->segs, j->segs + 1, (j->nsegs - 1) * sizeof *j->segs);
    j->nsegs--;
    j->off = 0;
}

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The segments an earlier process left, oldest first. 0, or -1 (out of memory, unreadable). */
static int seg_adopt(struct journal *j)
{
    DIR *d = opendir(j->dir);
    struct dirent *e;
    uint64_t *ns = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;

    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL) {
        const char *name = e->d_name;
        size_t i;
        for (i = 0; i < JSEG_NAME_LEN && name[i] >= '0' && name[i] <= '9'; i++) {
        }
        if (i != JSEG_NAME_LEN || strcmp(name + i, ".log") != 0)
            continue;
        if (n == cap) {
            uint64_t *p = realloc(ns, (cap ? 2 * cap : 16) * sizeof *p);
            if (p == NULL) {
                rc = -1;
                break;
            }
            ns = p;
            cap = cap ? 2 * cap : 16;
        }
        ns[n++] = strtoull(name, NULL, 10);
    }
    closedir(d);
    if (n > 0)
        qsort(ns, n, sizeof *ns, u64_cmp);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char path[4200];
        struct stat sb;
        int fd;
        seg_path(j, ns[i], path, sizeof path);
        fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &sb) != 0 || seg_push(j, ns[i], fd, (uint64_t)sb.st_size, 1)) {
            if (fd >= 0)
                close(fd);
            rc = -1;
            break;
        }
        j->appended += (uint64_t)sb.st_size;
        if (ns[i] >= j->next_n)
            j->next_n = ns[i] + 1;
    }
    free(ns);
    return rc;
}

/* ---- the indexer -------------------------------------------------------------------------- */

struct istate {
    unsigned char *buf;
    size_t bufcap;
    struct audit_hit *hits;
    size_t hcap;
    size_t limit; /* records the next step may take (0: the usual cap) */
};

/* 1 if the store already holds query_id's receipt (an adopted segment indexed in part) */
static stw_code receipt_stored(struct journal *j, const char *query_id, int *yes, stw_error *err)
{
    sqlite3_stmt *stmt = NULL;
    stw_code rc = store_take(&j->stmts, j->conn, &stmt,
                             "SELECT 1 FROM receipts WHERE query_id = ?1", err);
    if (rc != STW_OK)
        return rc;
    sqlite3_bind_text(stmt, 1, query_id, -1, SQLITE_STATIC);
    switch (sqlite3_step(stmt)) {
    case SQLITE_ROW: *yes = 1; break;
    case SQLITE_DONE: *yes = 0; break;
    default: rc = store_error(j->conn, err); break;
    }
    store_give(&j->stmts, stmt);
    return rc;
}

/* 1 if buf[0, n) is all zero bytes (a file's tail that a crash left unwritten) */
static int all_zero(const unsigned char *buf, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (buf[i] != 0)
            return 0;
    return 1;
}

/* Append an event about the journal itself to the batch (a receipt that could not be
 * written into the trail, damage in a segment left by a crash), so that the gap shows in the
 * chain. type is a string literal; detail is printed here. */
static stw_code gap_event(struct journal *j, struct audit_batch *b, const char *type,
                          const char *detail, stw_error *err)
{
    return audit_batch_event(j->conn, &j->stmts, b, util_now_ms(), type, NULL, detail, err);
}

/* BEGIN IMMEDIATE and a fresh batch on the indexer's connection. */
static stw_code batch_open(struct journal *j, struct audit_batch *b, stw_error *err)
{
    stw_code rc = store_exec_cached(&j->stmts, j->conn, "BEGIN IMMEDIATE", err);
    return rc == STW_OK ? audit_batch_begin(j->conn, &j->stmts, b, err) : rc;
}

/* Index whole records of segment s from byte off (the segment holds end bytes): up to
 * STW_JOURNAL_BATCH_RECORDS of them (is->limit, when set, fewer) in one transaction. *used:
 * bytes done (records indexed or skipped, or an adopted segment's torn or damaged tail).
 *
 * A record the store refuses for a reason that is not the store's state (not busy, full or
 * failing: a bug, or a record no retry will change) would stop the trail for good if the
 * batch were simply retried: the batch is cut before it and committed, then the record is
 * replaced by a `receipt_unindexed` event naming its query id and the error. */
static stw_code index_step(struct journal *j, const struct jseg *s, uint64_t off, uint64_t end,
                           struct istate *is, uint64_t *used, unsigned long long *nrec,
                           unsigned long long *nskip, stw_error *err)
{
    size_t want = end - off > STW_JOURNAL_READ_BYTES ? STW_JOURNAL_READ_BYTES
                                                     : (size_t)(end - off);
    size_t pos = 0, len, cap = is->limit ? is->limit : STW_JOURNAL_BATCH_RECORDS;
    struct audit_batch batch;
    stw_code rc = STW_OK;

    memset(&batch, 0, sizeof batch); /* released on every failure, also of BEGIN */
    *used = 0;
    *nrec = *nskip = 0;
    is->limit = 0;
    for (;;) {
        int f;
        if (want > is->bufcap) {
            unsigned char *p = realloc(is->buf, want);
            if (p == NULL)
                return stw_errorf(err, STW_NOMEM, NULL, "out of memory");
            is->buf = p;
            is->bufcap = want;
        }
        if (util_pread_all(s->fd, is->buf, want, off) != 0)
            return stw_errorf(err, STW_UNAVAILABLE, "audit_unavailable",
                              "cannot read receipt journal segment %llu: %s",
                              (unsigned long long)s->n, strerror(errno));
        f = rec_frame(is->buf, want, &len);
        /* a first record longer than the window: read all of it */
        if (f == 0 && len > want && len <= end - off) {
            want = len;
            continue;
        }
        break;
    }
    rc = batch_open(j, &batch, err);
    if (rc != STW_OK)
        goto fail;
    while (pos < want && *nrec + *nskip < cap) {
        struct audit_receipt r;
        int f = rec_frame(is->buf + pos, want - pos, &len), stored = 0;
        if (f == 0 && off + want < end)
            break; /* the window ends inside this record: the next step reads it */
        if (f != 1 || rec_decode(is->buf + pos, len, &r, &is->hits, &is->hcap) != 0) {
            char detail[160];
            uint64_t at = off + pos, rest = end - at;
            if (!s->adopted) {
                rc = stw_errorf(err, STW_STORE, "audit_unavailable",
                                "receipt journal segment %llu is damaged at byte %llu",
                                (unsigned long long)s->n, (unsigned long long)at);
                goto fail;
            }
            pos = (size_t)(end - off);
            (*nskip)++;
            /* a record cut short, or never written, at the end: a crash in mid-write, whose
             * answer never left. Anything else is damage: skipped, and said in the chain. */
            if (f == 0 || all_zero(is->buf + (at - off), (size_t)(want - (at - off))))
                break;
            snprintf(detail, sizeof detail,
                     "{\"segment\":%llu,\"offset\":%llu,\"bytes\":%llu,\"reason\":\"damaged\"}",
                     (unsigned long long)s->n, (unsigned long long)at,
                     (unsigned long long)rest);
            rc = gap_event(j, &batch, "receipt_journal_damaged", detail, err);
            if (rc != STW_OK)
                goto fail;
            break;
        }
        if (s->adopted) {
            rc = receipt_stored(j, r.query_id, &stored, err);
            if (rc != STW_OK)
                goto fail;
        }
        if (!stored) {
            rc = audit_batch_query(j->conn, &j->stmts, &batch, &r, err);
            if (rc != STW_OK && rc != STW_UNAVAILABLE && rc != STW_NOMEM) {
                struct util_buf detail = {NULL, 0, 0, 0};
                if (*nrec + *nskip > 0) { /* the ones before it first, on their own */
                    is->limit = (size_t)(*nrec + *nskip);
                    goto fail;
                }
                /* this batch holds only this record: roll it back, write the event instead */
                util_buf_str(&detail, "{\"error\":");
                util_buf_json_string(&detail, err->name);
                util_buf_str(&detail, ",\"query_id\":");
                util_buf_json_string(&detail, r.query_id);
                util_buf_str(&detail, "}");
                audit_batch_release(&batch);
                store_rollback(j->conn);
                rc = detail.oom ? stw_errorf(err, STW_NOMEM, NULL, "out of memory")
                                : batch_open(j, &batch, err);
                if (rc == STW_OK)
                    rc = gap_event(j, &batch, "receipt_unindexed", detail.p, err);
                free(detail.p);
                if (rc != STW_OK)
                    goto fail;
                pos += len;
                (*nskip)++;
                break;
            }
            if (rc != STW_OK)
                goto fail;
        }
        pos += len;
        if (stored)
            (*nskip)++;
        else
            (*nrec)++;
    }
    rc = audit_batch_end(j->conn, &j->stmts, &batch, err);
    if (rc == STW_OK)
        rc = store_exec_cached(&j->stmts, j->conn, "COMMIT", err);
    if (rc != STW_OK)
        goto fail;
    audit_batch_release(&batch);
    *used = pos;
    return STW_OK;
fail:
    audit_batch_release(&batch);
    store_rollback(j->conn);
    *nrec = *nskip = 0;
    return rc;
}

static void deadline_in(struct timespec *ts, long ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void *indexer_main(void *arg)
{
    struct journal *j = arg;
    struct istate is;
    struct timespec next = {0, 0}; /* the next batch does not start before */

    memset(&is, 0, sizeof is);
    pthread_mutex_lock(&j->mu);
    for (;;) {
        struct jseg s;
        struct timespec t0, t1;
        uint64_t off, used = 0;
        unsigned long long nrec = 0, nskip = 0;
        stw_error err;
        stw_code rc;

        if (j->nsegs > 1 && j->off >= j->segs[0].size) {
            seg_drop(j); /* not the one appended to */
            continue;
        }
        if (j->nsegs == 0 || j->off >= j->segs[0].size) {
            if (j->stop)
                break;
            j->idle = 1;
            pthread_cond_wait(&j->work, &j->mu);
            j->idle = 0;
            continue;
        }
        /* under a steady stream, one batch per STW_JOURNAL_LINGER_MS rather than one per
         * receipt or two: a transaction's fixed cost (the tail, the rollups, the commit and
         * the pages every commit writes again) is then shared by more receipts */
        if (!j->stop && !j->urgent && j->appended - j->indexed < STW_JOURNAL_LINGER_BYTES &&
            !j->failing) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (now.tv_sec < next.tv_sec ||
                (now.tv_sec == next.tv_sec && now.tv_nsec < next.tv_nsec)) {
                pthread_cond_timedwait(&j->work, &j->mu, &next);
                continue;
            }
        }
        deadline_in(&next, STW_JOURNAL_LINGER_MS);
        s = j->segs[0];
        off = j->off;
        pthread_mutex_unlock(&j->mu);
        memset(&err, 0, sizeof err);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        rc = index_step(j, &s, off, s.size, &is, &used, &nrec, &nskip, &err);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        pthread_mutex_lock(&j->mu);
        j->index_s += (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        if (rc == STW_OK) {
            j->off += used;
            j->indexed += used;
            j->nindexed += nrec;
            j->skipped += nskip;
            j->batches++;
            j->failing = 0;
            pthread_cond_broadcast(&j->progress);
        } else {
            struct timespec until;
            j->failing = 1;
            j->last = err;
            pthread_cond_broadcast(&j->progress);
            if (j->stop)
                break; /* the segments stay for the next open */
            deadline_in(&until, STW_JOURNAL_RETRY_MS);
            while (!j->stop && pthread_cond_timedwait(&j->work, &j->mu, &until) != ETIMEDOUT) {
            }
        }
    }
    pthread_mutex_unlock(&j->mu);
    free(is.buf);
    free(is.hits);
    return NULL;
}

/* ---- the interface ------------------------------------------------------------------------ */

static void journal_free(struct journal *j)
{
    for (size_t i = 0; i < j->nsegs; i++)
        close(j->segs[i].fd);
    free(j->segs);
    store_cache_clear(&j->stmts);
    sqlite3_close(j->conn);
    if (j->lock_fd >= 0)
        close(j->lock_fd); /* releases the flock */
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->work);
    pthread_cond_destroy(&j->progress);
    free(j);
}

stw_code journal_open(struct store *st, struct journal **out, stw_error *err)
{
    struct journal *j;
    pthread_condattr_t ca;
    char path[4200];
    stw_code rc;

    *out = NULL;
    j = calloc(1, sizeof *j);
    if (j == NULL)
        return stw_errorf(err, STW_NOMEM, NULL, "out of memory");
    j->lock_fd = -1;
    j->next_n = 1;
    pthread_mutex_init(&j->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&j->work, &ca);
    pthread_cond_init(&j->progress, &ca);
    pthread_condattr_destroy(&ca);
    snprintf(j->dir, sizeof j->dir, "%s/%s", store_dir(st), JOURNAL_DIR);
    snprintf(path, sizeof path, "%s/lock", j->dir);
    /* a folder we cannot write, or a journal another process owns: synchronous receipts */
    if ((mkdir(j->dir, 0700) != 0 && errno != EEXIST) ||
        (j->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0 ||
        flock(j->lock_fd, LOCK_EX | LOCK_NB) != 0 || access(j->dir, W_OK) != 0) {
        journal_free(j);
        return STW_OK;
    }
    if (seg_adopt(j) != 0) {
        int e = errno;
        rc = stw_errorf(err, STW_UNAVAILABLE, "audit_unavailable",
                        "cannot read the receipt journal in %s: %s", j->dir, strerror(e));
        journal_free(j);
        return rc;
    }
    rc = store_open_extra(st, &j->conn, err);
    if (rc != STW_OK) {
        journal_free(j);
        return rc;
    }
    store_cache_init(&j->stmts, j->conn);
    if (pthread_create(&j->thread, NULL, indexer_main, j) != 0) {
        journal_free(j);
        return stw_errorf(err, STW_INTERNAL, "thread_failed",
                          "cannot start the receipt journal's indexer");
    }
    pthread_setname_np(j->thread, "stw-journal");
    j->running = 1;
    *out = j;
    return STW_OK;
}

void journal_close(struct journal *j)
{
    if (j == NULL)
        return;
    pthread_mutex_lock(&j->mu);
    j->stop = 1;
    pthread_cond_broadcast(&j->work);
    pthread_cond_broadcast(&j->progress);
    pthread_mutex_unlock(&j->mu);
    if (j->running)
        pthread_join(j->thread, NULL);
    /* all indexed: the last segment goes too (the indexer keeps the one appended to) */
    if (j->nsegs == 1 && j->off >= j->segs[0].size)
        seg_drop(j);
    journal_free(j);
}

stw_code journal_append(struct journal *j, const struct audit_receipt *r, stw_error *err)
{
    unsigned char stack[4096]; /* a receipt of ten chunks is ~1.3 KB */
    struct wbuf b = {stack, 0, sizeof stack, 0, 0};
    struct timespec until;
    int waited = 0;
    stw_code rc = STW_OK;

    if (rec_encode(&b, r) != 0) {
        if (b.heap)
            free(b.p);
        return stw_errorf(err, STW_NOMEM, NULL, "out of memory (receipt record)");
    }
    pthread_mutex_lock(&j->mu);
    while (!j->stop && j->appended - j->indexed > STW_JOURNAL_BACKLOG_BYTES) {
        if (!waited) {
            deadline_in(&until, STW_JOURNAL_WAIT_MS);
            waited = 1;
        }
        if (pthread_cond_timedwait(&j->progress, &j->mu, &until) == ETIMEDOUT) {
            rc = stw_errorf(err, STW_UNAVAILABLE, "audit_unavailable",
                            "%llu bytes of receipts are waiting for the audit trail (%s)",
                            (unsigned long long)(j->appended - j->indexed),
                            j->failing ? j->last.message : "it is slow");
            goto done;
        }
    }
    if (j->stop) {
        rc = stw_errorf(err, STW_UNAVAILABLE, "audit_unavailable", "the store is closing");
        goto done;
    }
    if (j->nsegs == 0 || j->segs[j->nsegs - 1].adopted ||
        j->segs[j->nsegs - 1].size >= STW_JOURNAL_SEGMENT_BYTES) {
        rc = seg_new(j, err);
        if (rc != STW_OK)
            goto done;
    }
    {
        struct jseg *s = &j->segs[j->nsegs - 1];
        size_t left = b.n;
        const unsigned char *p = b.p;
        uint64_t at = s->size;
        while (left > 0) {
            ssize_t put_n = pwrite(s->fd, p, left, (off_t)at);
            if (put_n < 0 && errno == EINTR)
                continue;
            if (put_n <= 0) {
                int e = put_n < 0 ? errno : EIO;
                if (ftruncate(s->fd, (off_t)s->size) != 0) {
                    /* the torn bytes stay past size: never read, overwritten next */
                }
                rc = stw_errorf(err, STW_UNAVAILABLE,
                                e == ENOSPC || e == EDQUOT || e == EFBIG ? "storage_full"
                                                                         : "audit_unavailable",
                                "cannot write the receipt journal: %s", strerror(e));
                goto done;
            }
            p += put_n;
            left -= (size_t)put_n;
            at += (uint64_t)put_n;
        }
        s->size += b.n;
        j->appended += b.n;
        j->records++;
        if (j->idle) /* else it is writing, or lingers and looks again by itself */
            pthread_cond_signal(&j->work);
    }
done:
    pthread_mutex_unlock(&j->mu);
    if (b.heap)
        free(b.p);
    return rc;
}

stw_code journal_sync(struct journal *j, stw_error *err)
{
    struct timespec until;
    uint64_t target, behind;
    int failing;
    char why[STW_ERR_MSG_MAX];

    pthread_mutex_lock(&j->mu);
    target = j->appended;
    deadline_in(&until, STW_JOURNAL_WAIT_MS);
    j->urgent++;
    pthread_cond_signal(&j->work); /* a reader waits: no lingering */
    while (j->indexed < target && !j->stop &&
           pthread_cond_timedwait(&j->progress, &j->mu, &until) != ETIMEDOUT) {
    }
    j->urgent--;
    behind = j->indexed < target ? target - j->indexed : 0;
    failing = j->failing;
    snprintf(why, sizeof why, "%s", j->last.message);
    pthread_mutex_unlock(&j->mu);
    if (behind == 0)
        return STW_OK;
    return stw_errorf(err, STW_UNAVAILABLE, "audit_unavailable",
                      "the audit trail is %llu bytes of receipts behind (%s)",
                      (unsigned long long)behind, failing ? why : "still writing them");
}

void journal_stats(struct journal *j, struct journal_stats *out)
{
    pthread_mutex_lock(&j->mu);
    out->records = j->records;
    out->indexed = j->nindexed;
    out->bytes_pending = j->appended - j->indexed;
    out->batches = j->batches;
    out->skipped = j->skipped;
    out->index_s = j->index_s;
    pthread_mutex_unlock(&j->mu);
}
