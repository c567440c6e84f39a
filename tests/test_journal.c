/* test_journal.c - the receipt journal (src/journal.h) at its edges, on a real store.
 *
 * The store's write lock is held by a raw SQLite connection while receipts are appended, so
 * that they pile up in the journal with record sizes this test chooses:
 *
 *  1. live: a backlog larger than the indexer's read window (STW_JOURNAL_READ_BYTES), with a
 *     record whose 8-byte header straddles the window's end (bytes 1..7 of it inside). A
 *     review found that taken for damage: the live segment then stopped the indexer for good.
 *     Once the lock goes, journal_sync returns and every receipt is in the trail.
 *  2. adopted: the same backlog, but the journal is closed while the store is still locked (as
 *     if the process had died), a torn record is appended to the last segment (a write a crash
 *     cut short), and the journal is opened again after the lock goes: every whole receipt is
 *     in the trail once, the torn one is not, and no event says "damaged".
 *  3. damaged: a segment left behind with bytes changed in its middle: the receipts before the
 *     damage are in the trail, the rest of that segment is skipped, and a
 *     `receipt_journal_damaged` event in the chain names the segment and offset.
 *
 * Every case ends with the chain's verify (stw_audit_verify) passing.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "audit.h"
#include "check.h"
#include "journal.h"
#include "limits.h"
#include "steward.h"
#include "store.h"

static char data[256];

static sqlite3 *raw_lock(void)
{
    char path[300];
    sqlite3 *raw = NULL;

    snprintf(path, sizeof path, "%s/steward.db", data);
    if (sqlite3_open_v2(path, &raw, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
        sqlite3_exec(raw, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        CHECKF(0, "cannot take the write lock: %s", raw ? sqlite3_errmsg(raw) : "?");
        sqlite3_close(raw);
        return NULL;
    }
    return raw;
}

static void raw_unlock(sqlite3 *raw)
{
    if (raw != NULL)
        CHECK(sqlite3_exec(raw, "ROLLBACK", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(raw);
}

static long long count(struct store *st, const char *sql)
{
    sqlite3 *c = store_acquire(st);
    sqlite3_stmt *stmt = NULL;
    long long n = -1;

    if (sqlite3_prepare_v2(c, sql, -1, &stmt, NULL) == SQLITE_OK && sqlite3_step(stmt) == SQLITE_ROW)
        n = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    store_release(st, c);
    return n;
}

/* One receipt: query id q_<tag><i>, a reason of `pad` bytes (NULL when pad < 0), two hits. */
static stw_code append(struct journal *j, const char *tag, int i, int pad)
{
    static char reason[1 << 20];
    char qid[64];
    struct audit_hit hits[2] = {
        {1, 0.75, "prod", "v1", "chunk-a", "ehr", "doc-1", "patient-1"},
        {2, 0.5, "prod", "v1", "chunk-b", NULL, NULL, NULL},
    };
    struct audit_receipt r;
    stw_error err;
    stw_code rc;

    if (pad >= 0) {
        memset(reason, 'r', (size_t)pad);
        reason[pad] = '\0';
    }
    snprintf(qid, sizeof qid, "q_%s%06d", tag, i);
    memset(&r, 0, sizeof r);
    r.query_id = qid;
    r.principal = "rag";
    r.purpose = "TREAT";
    r.reason = pad >= 0 ? reason : NULL;
    r.at_ms = 1700000000000LL + i;
    r.policy_version = 1;
    r.k = 10;
    r.vector_sha256 = AUDIT_GENESIS;
    r.versions_json = "[{\"product\":\"prod\",\"version\":\"v1\"}]";
    r.nhits = 2;
    r.hits = hits;
    rc = journal_append(j, &r, &err);
    CHECKF(rc == STW_OK, "append %s: %s", qid, err.message);
    return rc;
}

static unsigned long long pending(struct journal *j)
{
    struct journal_stats js;
    journal_stats(j, &js);
    return js.bytes_pending;
}

/* Appends receipts of one size after a filler, so that a record starts 3 bytes before the
 * end of the indexer's first read window (its header straddles the window's end). Records
 * of ~1.6 KB: the window, not the batch's record cap, ends the first step. */
#define PAD 1500
static int append_straddling(struct journal *j, const char *tag, int *n_out)
{
    unsigned long long s0, base = pending(j), target = STW_JOURNAL_READ_BYTES - 3;
    int n = 0, m;
    long long delta;

    if (append(j, tag, n++, PAD) != STW_OK)
        return -1;
    s0 = pending(j) - base; /* one record */
    CHECKF(s0 * STW_JOURNAL_BATCH_RECORDS > STW_JOURNAL_READ_BYTES, "records of %llu bytes", s0);
    m = (int)(target / s0) - 2;
    delta = (long long)target - (long long)(m + 2) * (long long)s0; /* the filler's extra bytes */
    if (!CHECKF(delta >= 0 && delta < (long long)s0, "filler +%lld", delta))
        return -1;
    if (append(j, tag, n++, PAD + (int)delta) != STW_OK)
        return -1;
    for (int i = 0; i < m + 40; i++)
        if (append(j, tag, n++, PAD) != STW_OK)
            return -1;
    CHECKF(pending(j) - base > STW_JOURNAL_READ_BYTES, "only %llu bytes pending",
           pending(j) - base);
    *n_out = n;
    return 0;
}

static int verify_ok(stw_db *db)
{
    stw_principal admin;
    char *json = NULL;
    stw_error err;
    int ok;

    memset(&admin, 0, sizeof admin);
    snprintf(admin.id, sizeof admin.id, "admin");
    admin.roles = STW_ROLE_ADMIN;
    ok = stw_audit_verify(db, &admin, &json, &err) == STW_OK && json != NULL &&
         strstr(json, "\"ok\":true") != NULL;
    CHECKF(ok, "verify: %s", json ? json : err.message);
    free(json);
    return ok;
}

/* the journal's last segment file, into out */
static int last_segment(char *out, size_t cap)
{
    char dir[300], last[256] = "";
    struct dirent *e;
    DIR *d;

    snprintf(dir, sizeof dir, "%s/%s", data, JOURNAL_DIR);
    if ((d = opendir(dir)) == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        if (strlen(e->d_name) == 16 && strcmp(e->d_name + 12, ".log") == 0 &&
            strcmp(e->d_name, last) > 0)
            snprintf(last, sizeof last, "%s", e->d_name);
    closedir(d);
    if (last[0] == '\0')
        return -1;
    snprintf(out, cap, "%s/%s", dir, last);
    return 0;
}

int main(void)
{
    char root[] = "/tmp/stw-test-journal-XXXXXX", key[STW_KEY_MAX], seg[400];
    struct store *st = NULL;
    struct journal *j = NULL;
    sqlite3 *raw;
    stw_error err;
    stw_db *db = NULL;
    long long r0, n_dmg;
    int n1 = 0, n2 = 0, n3 = 0;
    stw_code rc;

    if (!CHECK(mkdtemp(root) != NULL))
        return check_summary("journal");
    snprintf(data, sizeof data, "%s/data", root);
    if (!CHECK(stw_init(data, key, &err) == STW_OK) ||
        !CHECK(store_open(data, 0, 2, 0, &st, &err) == STW_OK))
        return check_summary("journal");

    /* 1. live */
    r0 = count(st, "SELECT count(*) FROM receipts");
    rc = journal_open(st, &j, &err);
    if (!CHECK(rc == STW_OK && j != NULL))
        return check_summary("journal");
    raw = raw_lock();
    append_straddling(j, "a", &n1);
    /* the indexer woke at the first append and waits for the lock: past the busy timeout its
     * step fails, and the next one reads the whole backlog from the segment's first byte */
    usleep((STW_BUSY_TIMEOUT_MS + 500) * 1000);
    raw_unlock(raw);
    rc = journal_sync(j, &err);
    CHECKF(rc == STW_OK, "sync after the lock: %s", err.message);
    CHECK_EQ_INT(count(st, "SELECT count(*) FROM receipts"), r0 + n1);
    journal_close(j);
    j = NULL;
    printf("live: %d receipts, one header across the %u-byte read window, all indexed\n", n1,
           STW_JOURNAL_READ_BYTES);

    /* 2. adopted, with a torn last record */
    r0 = count(st, "SELECT count(*) FROM receipts");
    CHECK(journal_open(st, &j, &err) == STW_OK && j != NULL);
    raw = raw_lock();
    append_straddling(j, "b", &n2);
    journal_close(j); /* the indexer fails on the lock: the segments stay */
    j = NULL;
    raw_unlock(raw);
    if (CHECK(last_segment(seg, sizeof seg) == 0)) {
        FILE *f = fopen(seg, "r+b");
        unsigned char head[40];
        if (CHECK(f != NULL)) {
            CHECK(fread(head, 1, sizeof head, f) == sizeof head);
            CHECK(fseek(f, 0, SEEK_END) == 0 && fwrite(head, 1, sizeof head, f) == sizeof head);
            fclose(f);
        }
    }
    CHECK(journal_open(st, &j, &err) == STW_OK && j != NULL);
    if (j != NULL) {
        rc = journal_sync(j, &err);
        CHECKF(rc == STW_OK, "sync of the adopted journal: %s", err.message);
        journal_close(j);
        j = NULL;
    }
    CHECK_EQ_INT(count(st, "SELECT count(*) FROM receipts"), r0 + n2);
    CHECK_EQ_INT(count(st, "SELECT count(*) FROM audit_events WHERE type = "
                           "'receipt_journal_damaged'"),
                 0);
    printf("adopted: %d receipts left by a closed journal and a torn record: all indexed once, "
           "the torn one skipped\n",
           n2);

    /* 3. damaged in the middle of a left segment */
    r0 = count(st, "SELECT count(*) FROM receipts");
    CHECK(journal_open(st, &j, &err) == STW_OK && j != NULL);
    raw = raw_lock();
    for (n3 = 0; n3 < 200; n3++)
        append(j, "c", n3, -1);
    journal_close(j);
    j = NULL;
    raw_unlock(raw);
    if (CHECK(last_segment(seg, sizeof seg) == 0)) {
        FILE *f = fopen(seg, "r+b");
        if (CHECK(f != NULL)) {
            long size;
            CHECK(fseek(f, 0, SEEK_END) == 0);
            size = ftell(f);
            CHECK(fseek(f, size / 2, SEEK_SET) == 0 && fwrite("XXXXXXXX", 1, 8, f) == 8);
            fclose(f);
        }
    }
    CHECK(journal_open(st, &j, &err) == STW_OK && j != NULL);
    if (j != NULL) {
        rc = journal_sync(j, &err);
        CHECKF(rc == STW_OK, "sync after damage: %s", err.message);
        journal_close(j);
        j = NULL;
    }
    n_dmg = count(st, "SELECT count(*) FROM receipts") - r0;
    CHECKF(n_dmg > 50 && n_dmg < n3, "%lld of %d receipts indexed around the damage", n_dmg, n3);
    CHECK_EQ_INT(count(st, "SELECT count(*) FROM audit_events WHERE type = "
                           "'receipt_journal_damaged'"),
                 1);
    printf("damaged: %lld of %d receipts before the damage indexed, the rest skipped, one "
           "receipt_journal_damaged event\n",
           n_dmg, n3);
    store_close(st);

    /* the chain over all of it */
    if (CHECK(stw_open(data, NULL, &db, &err) == STW_OK)) {
        verify_ok(db);
        stw_close(db);
    }
    {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
        CHECK(system(cmd) == 0);
    }
    return check_summary("journal");
}
