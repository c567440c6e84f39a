/* test_audit.c - the audit trail at library level (src/audit.c, src/audit_fhir.c), and the
 * `steward audit` commands on the store it builds.
 *
 * One store is built through the public API: two products, four consumers with random grants,
 * an auditor, and a randomized run of queries (random principal, purpose, products, k and
 * subject filter). Then:
 *  (d) usage per principal, purpose and product, and the accounting of disclosures for every
 *      subject, equal what the run observed in its answers (whole run and both halves of it);
 *      a second store, whose receipts are written at chosen times over twelve days through
 *      audit_record_query, checks the hour and day rollups against brute force for random
 *      windows (aligned and not), and the time and principal filters of the events page; a
 *      third store, with receipts over several subject runs (migration 4), checks every
 *      subject's accounting of disclosures, whole and in random windows, against brute force;
 *  (a) every column (seq, at_ms, type, principal, detail, prev_hash, hash) of every event row,
 *      changed alone through a raw connection (after dropping the no-update trigger), makes
 *      stw_audit_verify report ok:false with first_bad_seq = that row's seq; restored, it
 *      verifies again;
 *  (a') a query event carries its receipt's SHA-256: every column of a sampled query's receipt
 *      row and disclosure rows, changed alone, and a disclosure row added or removed, make
 *      verify name that query's event;
 *  (c) with the triggers in place, UPDATE and DELETE on audit_events, receipts and
 *      disclosures are refused and change nothing;
 *  (f) the FHIR export: one AuditEvent per event with the documented shape, one entity per
 *      returned chunk and one Patient per subject for queries, no chunk text, and its chain
 *      fields re-verify the whole chain without the store;
 *  (e) a receipt that cannot be written withholds the answer: 503 audit_unavailable, no answer,
 *      and no receipt, event or disclosure half-written. The store is made "full" with
 *      RLIMIT_FSIZE after truncating the WAL, so the commit's first WAL write fails with EFBIG:
 *      chmod would not do (open descriptors keep their write access, and root ignores modes),
 *      a file size limit holds for root too and fails the write as a full disk would;
 *  (b) cutting off the tail (delete trigger dropped) passes a plain verify but fails against
 *      the pinned head (stw_audit_head), at the first missing seq; once new events refill the
 *      chain past the pin, at the pinned seq; the same through `steward audit head` and
 *      `steward audit verify --head --events` (exit 1).
 * Seed: STW_TEST_SEED (printed). */
#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "audit.h"
#include "check.h"
#include "limits.h"
#include "steward.h"
#include "util.h"

#define DIM    8
#define NCHUNK 24 /* per product */
#define NSUBJ  8
#define NCONS  4
#define NQUERY 120
#define HOUR   3600000LL
#define DAY    86400000LL

static const char *const products[] = {"notes", "labs"};
static const int purposes[] = {STW_PURPOSE_TREAT, STW_PURPOSE_HOPERAT, STW_PURPOSE_HRESCH};
static uint64_t rng;

static uint64_t rnd(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 2685821657736338717ull;
}

static const char *nz(const char *s)
{
    return s != NULL ? s : "";
}

static float frnd(void)
{
    return (float)((double)(rnd() >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* ---- small counting maps: key -> (queries, chunks) ------------------------------------- */

#define MAXKEYS 64

struct tally {
    size_t n;
    char key[MAXKEYS][STW_NAME_MAX + 1];
    long long queries[MAXKEYS], chunks[MAXKEYS];
};

static void tally_add(struct tally *t, const char *key, long long q, long long c)
{
    size_t i = 0;
    while (i < t->n && strcmp(t->key[i], key) != 0)
        i++;
    if (i == t->n) {
        if (t->n == MAXKEYS)
            return;
        snprintf(t->key[t->n++], sizeof t->key[0], "%s", key);
        t->queries[i] = t->chunks[i] = 0;
    }
    t->queries[i] += q;
    t->chunks[i] += c;
}

/* stw_usage's answer equals t (same keys, same counts, keys in byte order). */
static void check_usage(stw_db *db, const stw_principal *aud, const char *group_by, int64_t since,
                        int64_t until, const struct tally *t, const char *label)
{
    char *json = NULL;
    stw_error err;
    cJSON *root = NULL;
    const cJSON *g, *groups;
    size_t seen = 0;
    const char *prev = "";

    if (!CHECKF(stw_usage(db, aud, group_by, since, until, &json, &err) == STW_OK, "%s: %s", label,
                err.message))
        return;
    root = cJSON_Parse(json);
    groups = cJSON_GetObjectItemCaseSensitive(root, "groups");
    CHECK(cJSON_IsArray(groups));
    cJSON_ArrayForEach(g, groups)
    {
        const char *key = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(g, group_by));
        double q = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(g, "queries"));
        double c = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(g, "chunks"));
        size_t i = 0;
        if (!CHECK(key != NULL))
            continue;
        CHECKF(strcmp(prev, key) < 0, "%s: groups out of order at '%s'", label, key);
        prev = key;
        while (i < t->n && strcmp(t->key[i], key) != 0)
            i++;
        if (!CHECKF(i < t->n, "%s: unexpected %s group '%s'", label, group_by, key))
            continue;
        seen++;
        CHECKF((long long)q == t->queries[i] && (long long)c == t->chunks[i],
               "%s: %s '%s': got %g queries %g chunks, expected %lld and %lld", label, group_by,
               key, q, c, t->queries[i], t->chunks[i]);
    }
    CHECKF(seen == t->n, "%s: %zu %s groups, expected %zu", label, seen, group_by, t->n);
    cJSON_Delete(root);
    free(json);
}

/* ---- the main store ---------------------------------------------------------------------- */

struct fixture {
    char root[256], data[300], dbfile[340];
    const char *bin;
    stw_db *db;
    stw_principal admin, aud, cons[NCONS];
    uint32_t granted[NCONS][2]; /* purposes bits per consumer per product */
};

/* what one successful query returned */
struct observed {
    char qid[STW_QUERY_ID_MAX];
    int cons, purpose, half;
    size_t n;
    char product[16][STW_NAME_MAX + 1];
    int chunk[16]; /* index within its product */
    int64_t at_ms;
};

static struct observed obs[NQUERY];
static size_t nobs;

static int chunk_subject(int i)
{
    return i % NSUBJ;
}

static void die_if(int cond, const char *what, const stw_error *err)
{
    if (cond) {
        fprintf(stderr, "test_audit: %s: %s\n", what, err ? err->message : "");
        exit(1);
    }
}

static void build_store(struct fixture *fx)
{
    char key[STW_KEY_MAX];
    stw_error err;
    int rc;

    snprintf(fx->root, sizeof fx->root, "/tmp/stw-test-audit-XXXXXX");
    die_if(mkdtemp(fx->root) == NULL, "mkdtemp", NULL);
    snprintf(fx->data, sizeof fx->data, "%s/data", fx->root);
    snprintf(fx->dbfile, sizeof fx->dbfile, "%s/steward.db", fx->data);
    die_if(stw_init(fx->data, key, &err) != STW_OK, "init", &err);
    die_if(stw_open(fx->data, NULL, &fx->db, &err) != STW_OK, "open", &err);
    die_if(stw_authenticate(fx->db, key, &fx->admin, &err) != STW_OK, "admin", &err);
    rc = stw_authenticate(fx->db, "stw_not_a_key", &fx->aud, &err); /* an auth_failed event */
    CHECK_EQ_INT(rc, STW_UNAUTHENTICATED);

    for (int p = 0; p < 2; p++) {
        stw_product prod;
        stw_version_info vi;
        stw_chunk ch[NCHUNK];
        char ids[NCHUNK][16], subj[NCHUNK][16], docs[NCHUNK][16];
        float vec[NCHUNK][DIM];
        size_t acc, unch;

        memset(&prod, 0, sizeof prod);
        snprintf(prod.name, sizeof prod.name, "%s", products[p]);
        snprintf(prod.domain, sizeof prod.domain, "clinical");
        snprintf(prod.contract.embedding_model, sizeof prod.contract.embedding_model, "test");
        prod.contract.dimension = DIM;
        prod.contract.metric = STW_METRIC_COSINE;
        die_if(stw_product_create(fx->db, &fx->admin, &prod, &err) != STW_OK, "product", &err);
        die_if(stw_version_create(fx->db, &fx->admin, products[p], "v1", &vi, &err) != STW_OK,
               "version", &err);
        memset(ch, 0, sizeof ch);
        for (int i = 0; i < NCHUNK; i++) {
            snprintf(ids[i], sizeof ids[i], "%c%02d", products[p][0], i);
            snprintf(subj[i], sizeof subj[i], "patient-%d", chunk_subject(i));
            snprintf(docs[i], sizeof docs[i], "doc-%c%d", products[p][0], i / 2);
            for (int j = 0; j < DIM; j++)
                vec[i][j] = frnd();
            ch[i].id = ids[i];
            ch[i].text = "SECRET-CHUNK-TEXT";
            ch[i].vector = vec[i];
            ch[i].dim = DIM;
            ch[i].confidentiality = STW_CONF_N;
            ch[i].subject = subj[i];
            ch[i].document_id = docs[i];
            ch[i].source_system = p == 0 ? "ehr" : "lis";
            ch[i].created_ms = STW_TIME_NONE;
        }
        die_if(stw_chunks_add(fx->db, &fx->admin, products[p], "v1", ch, NCHUNK, &acc, &unch,
                              &err) != STW_OK,
               "chunks", &err);
        die_if(stw_version_publish(fx->db, &fx->admin, products[p], "v1", &vi, &err) != STW_OK,
               "publish", &err);
    }
    for (int c = 0; c < NCONS + 1; c++) {
        stw_principal pr;
        char k2[STW_KEY_MAX];
        memset(&pr, 0, sizeof pr);
        if (c < NCONS)
            snprintf(pr.id, sizeof pr.id, "consumer-%d", c);
        else
            snprintf(pr.id, sizeof pr.id, "auditor");
        pr.roles = c < NCONS ? STW_ROLE_CONSUMER : STW_ROLE_AUDITOR;
        die_if(stw_principal_create(fx->db, &fx->admin, &pr, k2, &err) != STW_OK, "principal",
               &err);
        die_if(stw_authenticate(fx->db, k2, c < NCONS ? &fx->cons[c] : &fx->aud, &err) != STW_OK,
               "authenticate", &err);
    }
    /* random grants: each consumer gets a random purpose subset on each product (maybe none) */
    for (int c = 0; c < NCONS; c++) {
        for (int p = 0; p < 2; p++) {
            stw_grant g;
            int64_t pv;
            uint32_t bits = 0;
            for (int i = 0; i < 3; i++)
                if (rnd() % 4 != 0)
                    bits |= 1u << purposes[i];
            fx->granted[c][p] = bits;
            if (bits == 0)
                continue;
            memset(&g, 0, sizeof g);
            snprintf(g.principal, sizeof g.principal, "%s", fx->cons[c].id);
            snprintf(g.product, sizeof g.product, "%s", products[p]);
            g.purposes = bits;
            g.clearance = STW_CONF_V;
            die_if(stw_grant_create(fx->db, &fx->admin, &g, &pv, &err) != STW_OK, "grant", &err);
        }
    }
}

/* The randomized run; fills obs[]. Half 1 starts after *t_mid. */
static void run_queries(struct fixture *fx, int64_t *t_mid)
{
    size_t denied = 0;

    for (int qi = 0; qi < NQUERY; qi++) {
        int c = (int)(rnd() % NCONS), purpose = purposes[rnd() % 3], which = (int)(rnd() % 3);
        stw_product_ref refs[2];
        size_t nref = 0;
        float v[DIM];
        char subject[32];
        stw_query q;
        stw_answer *a = NULL;
        stw_error err;
        stw_code rc;
        int entitled = 1;

        if (qi == NQUERY / 2) {
            usleep(20000);
            *t_mid = util_now_ms();
            usleep(20000);
        }
        for (int p = 0; p < 2; p++) {
            if (which != 2 && which != p)
                continue;
            refs[nref++] = (stw_product_ref){products[p], NULL, STW_TIME_NONE};
            entitled &= (fx->granted[c][p] >> purpose) & 1u;
        }
        for (int j = 0; j < DIM; j++)
            v[j] = frnd();
        memset(&q, 0, sizeof q);
        q.vector = v;
        q.dim = DIM;
        q.k = 1 + rnd() % 6;
        q.purpose = purpose;
        q.nproducts = nref;
        q.products = refs;
        q.filter.created_from = q.filter.created_to = STW_TIME_NONE;
        if (rnd() % 4 == 0) {
            snprintf(subject, sizeof subject, "patient-%d", (int)(rnd() % NSUBJ));
            q.filter.subject = subject;
        }
        q.include = STW_INC_ALL;
        rc = stw_query_run(fx->db, &fx->cons[c], &q, &a, &err);
        if (!entitled) {
            CHECKF(rc == STW_FORBIDDEN, "query %d: expected 403, got %d", qi, (int)rc);
            stw_answer_free(a);
            denied++;
            continue;
        }
        if (!CHECKF(rc == STW_OK, "query %d: %s", qi, err.message))
            continue;
        {
            struct observed *o = &obs[nobs++];
            memset(o, 0, sizeof *o);
            snprintf(o->qid, sizeof o->qid, "%s", a->query_id);
            o->cons = c;
            o->purpose = purpose;
            o->half = qi >= NQUERY / 2;
            o->n = a->nresults;
            for (size_t i = 0; i < a->nresults && i < 16; i++) {
                snprintf(o->product[i], sizeof o->product[i], "%s", a->results[i].product);
                o->chunk[i] = atoi(a->results[i].chunk_id + 1);
            }
        }
        stw_answer_free(a);
    }
    printf("randomized run: %zu answered, %zu refused (not entitled)\n", nobs, denied);
}

/* (d) usage and disclosures equal what the run observed */
static void check_observed(struct fixture *fx, int64_t t_mid)
{
    static const char *const groups[] = {"principal", "purpose", "product"};

    for (int g = 0; g < 3; g++) {
        for (int half = -1; half <= 1; half++) {
            struct tally t;
            char label[64];
            memset(&t, 0, sizeof t);
            for (size_t i = 0; i < nobs; i++) {
                const struct observed *o = &obs[i];
                if (half >= 0 && o->half != half)
                    continue;
                if (g == 0)
                    tally_add(&t, fx->cons[o->cons].id, 1, (long long)o->n);
                else if (g == 1)
                    tally_add(&t, stw_purpose_name(o->purpose), 1, (long long)o->n);
                else
                    for (int p = 0; p < 2; p++) {
                        long long n = 0;
                        for (size_t r = 0; r < o->n; r++)
                            n += strcmp(o->product[r], products[p]) == 0;
                        if (n > 0)
                            tally_add(&t, products[p], 1, n);
                    }
            }
            snprintf(label, sizeof label, "usage by %s (%s)", groups[g],
                     half < 0    ? "whole run"
                     : half == 0 ? "first half"
                                 : "second half");
            check_usage(fx->db, &fx->aud, groups[g], half == 1 ? t_mid : STW_TIME_NONE,
                        half == 0 ? t_mid : STW_TIME_NONE, &t, label);
        }
    }

    /* every subject's accounting: the same (query, product, chunk, rank, who, purpose) set */
    for (int s = 0; s < NSUBJ; s++) {
        char subject[32], line[256], *json = NULL;
        char(*want)[256] = calloc(NQUERY * 16, 256);
        size_t nwant = 0, ngot = 0;
        stw_error err;
        cJSON *root;
        const cJSON *d, *c;

        snprintf(subject, sizeof subject, "patient-%d", s);
        for (size_t i = 0; i < nobs; i++)
            for (size_t r = 0; r < obs[i].n; r++)
                if (chunk_subject(obs[i].chunk[r]) == s)
                    snprintf(want[nwant++], 256, "%.40s|%.40s|%c%02d|%zu|%.40s|%.20s", obs[i].qid,
                             obs[i].product[r], obs[i].product[r][0], obs[i].chunk[r], r + 1,
                             fx->cons[obs[i].cons].id, stw_purpose_name(obs[i].purpose));
        if (!CHECK(stw_audit_disclosures(fx->db, &fx->aud, subject, STW_TIME_NONE, STW_TIME_NONE,
                                         &json, &err) == STW_OK)) {
            free(want);
            continue;
        }
        root = cJSON_Parse(json);
        CHECK_EQ_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(root, "subject")),
                     subject);
        cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(root, "disclosures"))
        {
            const char *qid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(d, "query_id"));
            const char *who =
                cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(d, "principal"));
            const char *pur = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(d, "purpose"));
            cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(d, "chunks"))
            {
                size_t k = 0;
                snprintf(line, sizeof line, "%s|%s|%s|%d|%s|%s", qid ? qid : "?",
                         cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "product")),
                         cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "chunk_id")),
                         (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "rank")),
                         who ? who : "?", pur ? pur : "?");
                ngot++;
                while (k < nwant && strcmp(want[k], line) != 0)
                    k++;
                if (CHECKF(k < nwant, "%s: disclosure not observed: %s", subject, line))
                    want[k][0] = '\0'; /* matched once */
            }
        }
        CHECKF(ngot == nwant, "%s: %zu disclosures, observed %zu", subject, ngot, nwant);
        cJSON_Delete(root);
        free(json);
        free(want);
    }
}

/* ---- (d') rollups and event windows against brute force, on receipts at chosen times ---- */

/* A new store in root/data (data gets that path), with a raw connection to its database in
 * an open write transaction: stores whose receipts a test writes at chosen times through
 * audit_record_query. */
static sqlite3 *raw_store(const char *root, char *data, size_t cap)
{
    char dbfile[4200], key[STW_KEY_MAX];
    sqlite3 *raw = NULL;
    stw_error err;

    snprintf(data, cap, "%s/data", root);
    snprintf(dbfile, sizeof dbfile, "%s/steward.db", data);
    die_if(stw_init(data, key, &err) != STW_OK, "init store", &err);
    die_if(sqlite3_open_v2(dbfile, &raw, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK, "raw", NULL);
    sqlite3_busy_timeout(raw, 5000);
    CHECK(sqlite3_exec(raw, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK);
    return raw;
}

static void check_rollups(void)
{
    enum { NREC = 400 };
    static const char *const prods[] = {"pa", "pb", "pc"};
    static const char *const groups[] = {"principal", "purpose", "product"};
    char root[] = "/tmp/stw-test-rollup-XXXXXX", data[64];
    struct {
        int64_t at;
        int who, purpose;
        size_t n;
        int prod[5];
    } *rec = calloc(NREC, sizeof *rec);
    int64_t base = (util_now_ms() / DAY + 1) * DAY, t = base;
    stw_principal admin;
    stw_error err;
    stw_db *db = NULL;
    sqlite3 *raw = NULL;

    if (!CHECK(mkdtemp(root) != NULL && rec != NULL))
        return;
    raw = raw_store(root, data, sizeof data);
    for (int i = 0; i < NREC; i++) {
        struct audit_hit hits[5];
        struct audit_receipt r;
        char qid[40], who[16];

        /* mostly minutes apart, now and then hours: twelve days in all, some hours empty */
        t += rnd() % 8 == 0 ? (int64_t)(rnd() % (6 * HOUR)) : (int64_t)(rnd() % (20 * 60000));
        rec[i].at = t;
        rec[i].who = (int)(rnd() % 5);
        rec[i].purpose = purposes[rnd() % 3];
        rec[i].n = rnd() % 6;
        for (size_t h = 0; h < rec[i].n; h++) {
            rec[i].prod[h] = (int)(rnd() % 3);
            hits[h] = (struct audit_hit){h + 1, 0.5,        prods[rec[i].prod[h]], "v1", "c1", NULL,
                                         NULL,  "patient-x"};
        }
        snprintf(qid, sizeof qid, "q_%032d", i);
        snprintf(who, sizeof who, "p%d", rec[i].who);
        memset(&r, 0, sizeof r);
        r.query_id = qid;
        r.principal = who;
        r.purpose = stw_purpose_name(rec[i].purpose);
        r.at_ms = t;
        r.policy_version = 1;
        r.k = 5;
        r.vector_sha256 = AUDIT_GENESIS;
        r.versions_json = "[]";
        r.nhits = rec[i].n;
        r.hits = hits;
        if (!CHECKF(audit_record_query(raw, NULL, &r, &err) == STW_OK, "record: %s", err.message))
            break;
    }
    CHECK(sqlite3_exec(raw, "COMMIT", NULL, NULL, NULL) == SQLITE_OK);
    printf("rollup store: %d receipts over %.1f days\n", NREC, (double)(t - base) / DAY);

    die_if(stw_open(data, NULL, &db, &err) != STW_OK, "open rollup store", &err);
    memset(&admin, 0, sizeof admin);
    snprintf(admin.id, sizeof admin.id, "admin");
    admin.roles = STW_ROLE_ADMIN;
    for (int w = 0; w < 120; w++) {
        /* windows from hours to days; edges random, or on an hour or a day boundary */
        int64_t span = t - base + 2 * DAY, since, until;
        int mode = (int)(rnd() % 4);
        since = base - DAY + (int64_t)(rnd() % (uint64_t)span);
        until = since + (int64_t)(rnd() % (uint64_t)(rnd() % 2 ? 3 * DAY : 6 * HOUR));
        if (mode == 1) {
            since -= since % HOUR;
            until -= until % HOUR;
        } else if (mode == 2) {
            since -= since % DAY;
            until -= until % DAY;
        }
        for (int g = 0; g < 3; g++) {
            struct tally tl;
            char label[96];
            int open = w % 10 == 0; /* some windows are open on one side */
            int64_t s = open && w % 20 == 0 ? STW_TIME_NONE : since;
            int64_t u = open && w % 20 != 0 ? STW_TIME_NONE : until;
            memset(&tl, 0, sizeof tl);
            for (int i = 0; i < NREC; i++) {
                char name[16];
                if ((s != STW_TIME_NONE && rec[i].at < s) || (u != STW_TIME_NONE && rec[i].at >= u))
                    continue;
                if (g == 0) {
                    snprintf(name, sizeof name, "p%d", rec[i].who);
                    tally_add(&tl, name, 1, (long long)rec[i].n);
                } else if (g == 1) {
                    tally_add(&tl, stw_purpose_name(rec[i].purpose), 1, (long long)rec[i].n);
                } else {
                    for (int p = 0; p < 3; p++) {
                        long long n = 0;
                        for (size_t h = 0; h < rec[i].n; h++)
                            n += rec[i].prod[h] == p;
                        if (n > 0)
                            tally_add(&tl, prods[p], 1, n);
                    }
                }
            }
            snprintf(label, sizeof label, "rollup window %d (mode %d) by %s", w, mode, groups[g]);
            check_usage(db, &admin, groups[g], s, u, &tl, label);
        }
        /* the events page over the same window, optionally for one principal: the seqs that
         * brute force over (seq, at_ms, principal) finds, in order */
        {
            stw_event_filter f = {since, until, NULL, NULL, 0, 1000};
            char who[16], *json = NULL;
            sqlite3_stmt *st = NULL;
            cJSON *page;
            const cJSON *e;
            size_t idx = 0, nexp = 0;
            int64_t expect[NREC + 2];

            snprintf(who, sizeof who, "p%d", (int)(rnd() % 5));
            if (w % 2)
                f.principal = who;
            if (w % 7 == 0)
                f.after_seq = (int64_t)(rnd() % NREC);
            sqlite3_prepare_v2(raw, "SELECT seq, at_ms, principal FROM audit_events ORDER BY seq",
                               -1, &st, NULL);
            while (sqlite3_step(st) == SQLITE_ROW) {
                const char *p = (const char *)sqlite3_column_text(st, 2);
                int64_t seq = sqlite3_column_int64(st, 0), at = sqlite3_column_int64(st, 1);
                if (seq > f.after_seq && at >= since && at < until &&
                    (f.principal == NULL || (p != NULL && strcmp(p, who) == 0)))
                    expect[nexp++] = seq;
            }
            sqlite3_finalize(st);
            if (!CHECK(stw_audit_events(db, &admin, &f, &json, &err) == STW_OK))
                continue;
            page = cJSON_Parse(json);
            cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(page, "events"))
            {
                int64_t seq =
                    (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(e, "seq"));
                CHECKF(idx < nexp && seq == expect[idx],
                       "events window %d: event %zu is seq %lld, expected %lld", w, idx,
                       (long long)seq, idx < nexp ? (long long)expect[idx] : -1LL);
                idx++;
            }
            CHECKF(idx == nexp, "events window %d: %zu events, expected %zu", w, idx, nexp);
            cJSON_Delete(page);
            free(json);
        }
    }
    stw_close(db);
    sqlite3_close(raw);
    free(rec);
    {
        char cmd[160];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
        CHECK(system(cmd) == 0);
    }
}

/* ---- (d'') receipt text: written directly, it must be what cJSON prints -------------------- */

static int verify(stw_db *db, const stw_principal *aud, const stw_audit_pin *pin, int64_t *bad,
                  int64_t *events);

/* A random string of 1..24 bytes from the awkward ones: quotes, backslashes, control bytes,
 * multi-byte UTF-8, plain letters. */
static void awkward(char *out, size_t cap)
{
    static const char *const parts[] = {"\"", "\\", "\n", "\t", "\b", "\f", "\r", "\x01", "\x1f",
                                        "/", "\xc3\xa9", "\xe2\x82\xac", "a", "Z", "0", " ",
                                        "{", "}", "\x7f"};
    size_t n = 1 + rnd() % 24, len = 0;

    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const char *p = parts[rnd() % (sizeof parts / sizeof parts[0])];
        if (len + strlen(p) + 1 > cap)
            break;
        memcpy(out + len, p, strlen(p) + 1);
        len += strlen(p);
    }
}

/* A double of every kind cJSON formats differently: ints, halves, float-derived scores,
 * tiny, huge, negative. */
static double awkward_num(void)
{
    switch (rnd() % 6) {
    case 0: return (double)(int64_t)(rnd() % 2000001) - 1000000;
    case 1: return (double)(rnd() % 1000) / 2.0;
    case 2: return (double)frnd();
    case 3: return (double)frnd() * 1e-300;
    case 4: return (double)frnd() * 1e300;
    default: return -(double)rnd() / 3.0;
    }
}

/* Receipts whose strings and scores are awkward: each stored receipt is byte for byte what
 * cJSON prints for its own parse (the format the chain hashes), its strings and numbers read
 * back equal, and verify (which checks every query event's detail is canonical) passes. */
static void check_receipt_text(void)
{
    enum { NREC = 300 };
    char root[] = "/tmp/stw-test-text-XXXXXX", data[64];
    static char strs[NREC][6][32];
    static double scores[NREC][3];
    stw_principal aud;
    stw_error err;
    stw_db *db = NULL;
    sqlite3 *raw = NULL;
    sqlite3_stmt *st = NULL;
    int64_t t = util_now_ms();
    long same = 0, mismatched = 0;

    if (!CHECK(mkdtemp(root) != NULL))
        return;
    raw = raw_store(root, data, sizeof data);
    for (int i = 0; i < NREC; i++) {
        struct audit_hit hits[3];
        struct audit_receipt r;
        char qid[40];
        size_t n = rnd() % 4;
        for (int s = 0; s < 6; s++)
            awkward(strs[i][s], sizeof strs[i][s]);
        for (size_t h = 0; h < n; h++) {
            scores[i][h] = awkward_num();
            hits[h] = (struct audit_hit){h + 1, scores[i][h], "prod", "v1", strs[i][h],
                                         rnd() % 2 ? strs[i][3] : NULL, strs[i][4], strs[i][5]};
        }
        snprintf(qid, sizeof qid, "q_%032d", i);
        memset(&r, 0, sizeof r);
        r.query_id = qid;
        r.principal = "p1";
        r.purpose = "TREAT";
        r.reason = rnd() % 2 ? strs[i][5] : NULL;
        r.at_ms = t + i;
        r.policy_version = (int64_t)(rnd() % 5000000000ull);
        r.k = 10;
        r.vector_sha256 = AUDIT_GENESIS;
        r.versions_json = "[{\"product\":\"prod\",\"version\":\"v1\"}]";
        r.filter_json = rnd() % 2 ? "{ \"subject\" : [\"a\\u0001\"] }" : NULL;
        r.break_glass = rnd() % 5 == 0;
        r.nhits = n;
        r.hits = hits;
        if (!CHECKF(audit_record_query(raw, NULL, &r, &err) == STW_OK, "record: %s", err.message))
            break;
    }
    CHECK(sqlite3_exec(raw, "COMMIT", NULL, NULL, NULL) == SQLITE_OK);
    CHECK(sqlite3_prepare_v2(raw, "SELECT query_id, receipt FROM receipts ORDER BY seq", -1, &st,
                             NULL) == SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *qid = (const char *)sqlite3_column_text(st, 0);
        const char *text = (const char *)sqlite3_column_text(st, 1);
        cJSON *j = cJSON_Parse(text), *res;
        char *again = j ? cJSON_PrintUnformatted(j) : NULL;
        int i = atoi(qid + 2), h = 0, ok = again != NULL && strcmp(again, text) == 0;
        res = cJSON_GetObjectItemCaseSensitive(j, "results");
        for (cJSON *o = res ? res->child : NULL; ok && o != NULL; o = o->next, h++) {
            const cJSON *cid = cJSON_GetObjectItemCaseSensitive(o, "chunk_id");
            const cJSON *sc = cJSON_GetObjectItemCaseSensitive(o, "score");
            ok = cJSON_IsString(cid) && strcmp(cid->valuestring, strs[i][h]) == 0 &&
                 cJSON_IsNumber(sc) &&
                 fabs(sc->valuedouble - scores[i][h]) <= fabs(scores[i][h]) * 1e-15;
        }
        if (ok)
            same++;
        else if (mismatched++ < 3)
            CHECKF(0, "receipt %s is not cJSON's text (or lost a value):\n  %s\n  %s", qid, text,
                   again ? again : "(does not parse)");
        free(again);
        cJSON_Delete(j);
    }
    sqlite3_finalize(st);
    sqlite3_close(raw);
    CHECK_EQ_INT(same, NREC);
    die_if(stw_open(data, NULL, &db, &err) != STW_OK, "open text store", &err);
    memset(&aud, 0, sizeof aud);
    snprintf(aud.id, sizeof aud.id, "admin");
    aud.roles = STW_ROLE_ADMIN;
    CHECK(verify(db, &aud, NULL, NULL, NULL) == 1);
    stw_close(db);
    {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
        CHECK(system(cmd) == 0);
    }
    printf("receipt text: %ld of %d receipts with awkward strings and numbers are cJSON's own "
           "text; verify ok\n", same, NREC);
}

/* ---- the subject runs of migration 4 --------------------------------------------------------- */

static int verify(stw_db *db, const stw_principal *aud, const stw_audit_pin *pin, int64_t *bad,
                  int64_t *events);

/* Run 2 of a store with runs: verify passes; a run row deleted, or moved to another subject,
 * or a run's span shifted (triggers dropped for it) makes verify name the run's first seq;
 * each restored, verify passes again. */
static void check_runs_tamper(stw_db *db, const stw_principal *admin, sqlite3 *raw)
{
    static const char *const edits[] = {
        "DELETE FROM subject_index WHERE run = 2 AND (subject, at_ms, query_id, rank) ="
        " (SELECT subject, at_ms, query_id, rank FROM subject_index WHERE run = 2 LIMIT 1)",
        "UPDATE subject_index SET subject = 'patient-xx' WHERE run = 2 AND (subject, at_ms,"
        " query_id, rank) = (SELECT subject, at_ms, query_id, rank FROM subject_index"
        " WHERE run = 2 LIMIT 1)",
        "UPDATE subject_runs SET from_seq = from_seq + 1 WHERE run = 2",
    };
    int64_t from = 0, bad = -1;
    sqlite3_stmt *st = NULL;

    CHECK(verify(db, admin, NULL, &bad, NULL) == 1);
    sqlite3_prepare_v2(raw, "SELECT from_seq FROM subject_runs WHERE run = 2", -1, &st, NULL);
    if (sqlite3_step(st) == SQLITE_ROW)
        from = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (!CHECK(from > 0))
        return;
    CHECK(sqlite3_exec(raw, "DROP TRIGGER subject_index_no_delete; DROP TRIGGER"
                            " subject_index_no_update; DROP TRIGGER subject_runs_no_update",
                       NULL, NULL, NULL) == SQLITE_OK);
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        CHECK(sqlite3_exec(raw, "SAVEPOINT tamper", NULL, NULL, NULL) == SQLITE_OK);
        CHECKF(sqlite3_exec(raw, edits[i], NULL, NULL, NULL) == SQLITE_OK &&
                   sqlite3_changes(raw) == 1,
               "edit %zu: %s", i, sqlite3_errmsg(raw));
        CHECK(sqlite3_exec(raw, "RELEASE tamper", NULL, NULL, NULL) == SQLITE_OK);
        {
            int ok = verify(db, admin, NULL, &bad, NULL);
            CHECKF(ok == 0 && bad == from,
                   "subject run edit %zu: verify says ok %d, first_bad_seq %lld, expected %lld", i,
                   ok, (long long)bad, (long long)from);
        }
        /* undo: rebuild run 2 from the disclosures it indexes */
        if (i == 2)
            CHECK(sqlite3_exec(raw, "UPDATE subject_runs SET from_seq = from_seq - 1"
                                    " WHERE run = 2", NULL, NULL, NULL) == SQLITE_OK);
        else {
            char sql[600];
            snprintf(sql, sizeof sql,
                     "DELETE FROM subject_index WHERE run = 2;"
                     "INSERT INTO subject_index SELECT 2, d.subject, d.at_ms, d.query_id, d.rank"
                     " FROM subject_runs r, receipts t JOIN disclosures d"
                     " ON d.query_id = t.query_id WHERE r.run = 2 AND t.seq >= r.from_seq"
                     " AND t.seq <= r.upto_seq AND d.subject IS NOT NULL");
            CHECK(sqlite3_exec(raw, sql, NULL, NULL, NULL) == SQLITE_OK);
        }
        CHECKF(verify(db, admin, NULL, &bad, NULL) == 1, "restored after edit %zu", i);
    }
    CHECK(sqlite3_exec(raw,
                       "CREATE TRIGGER subject_index_no_delete BEFORE DELETE ON subject_index"
                       "  BEGIN SELECT RAISE(ABORT, 'subject runs are append-only'); END;"
                       "CREATE TRIGGER subject_index_no_update BEFORE UPDATE ON subject_index"
                       "  BEGIN SELECT RAISE(ABORT, 'subject runs are append-only'); END;"
                       "CREATE TRIGGER subject_runs_no_update BEFORE UPDATE ON subject_runs"
                       "  BEGIN SELECT RAISE(ABORT, 'subject runs are append-only'); END;",
                       NULL, NULL, NULL) == SQLITE_OK);
    /* and with the triggers back, the same edits are refused */
    CHECK(sqlite3_exec(raw, edits[0], NULL, NULL, NULL) != SQLITE_OK);
    CHECK(sqlite3_exec(raw, edits[2], NULL, NULL, NULL) != SQLITE_OK);
}

/* A store whose receipts span several subject runs (STW_SUBJECT_RUN_EVENTS chain events each):
 * 40 subjects, 0-5 hits per receipt (some without a subject), other events in between, and
 * many receipts sharing a millisecond, so that run edges fall inside one. For every subject
 * and random windows, the accounting of disclosures lists exactly the (query_id, rank) pairs
 * that brute force over what was written finds, in (time, query id, rank) order: rows in
 * runs, rows after the last run, none twice. */
static void check_subject_runs(void)
{
    enum { NREC = 3 * STW_SUBJECT_RUN_EVENTS, RUN_SUBJECTS = 40 };
    char root[] = "/tmp/stw-test-runs-XXXXXX", data[64];
    struct {
        int64_t at;
        size_t n;
        int subj[5]; /* -1: no subject */
    } *rec = calloc(NREC, sizeof *rec);
    int64_t t = (util_now_ms() / DAY + 1) * DAY; /* after the store's own first events */
    stw_principal admin;
    stw_error err;
    stw_db *db = NULL;
    sqlite3 *raw = NULL;
    sqlite3_stmt *st = NULL;
    int64_t runs = 0, indexed = 0;

    if (!CHECK(mkdtemp(root) != NULL && rec != NULL))
        return;
    raw = raw_store(root, data, sizeof data);
    for (int i = 0; i < NREC; i++) {
        struct audit_hit hits[5];
        char subj[5][32], qid[40], chunk[5][32];
        struct audit_receipt r;

        /* half of the receipts share the previous one's millisecond */
        t += rnd() % 2 ? 0 : (int64_t)(rnd() % 600000);
        rec[i].at = t;
        rec[i].n = rnd() % 6;
        for (size_t h = 0; h < rec[i].n; h++) {
            rec[i].subj[h] = rnd() % 8 == 0 ? -1 : (int)(rnd() % RUN_SUBJECTS);
            snprintf(subj[h], sizeof subj[h], "patient-%02d", rec[i].subj[h]);
            snprintf(chunk[h], sizeof chunk[h], "c%zu", h);
            hits[h] = (struct audit_hit){h + 1,    0.5,  "notes", "v1", chunk[h], NULL, NULL,
                                         rec[i].subj[h] < 0 ? NULL : subj[h]};
        }
        snprintf(qid, sizeof qid, "q_%032d", i);
        memset(&r, 0, sizeof r);
        r.query_id = qid;
        r.principal = "p1";
        r.purpose = "TREAT";
        r.at_ms = t;
        r.policy_version = 1;
        r.k = 5;
        r.vector_sha256 = AUDIT_GENESIS;
        r.versions_json = "[]";
        r.nhits = rec[i].n;
        r.hits = hits;
        if (!CHECKF(audit_record_query(raw, NULL, &r, &err) == STW_OK, "record: %s", err.message))
            break;
        if (rnd() % 4 == 0 && !CHECK(audit_append(raw, t, "ingest", "admin", "{\"n\":1}", NULL,
                                                    &err) == STW_OK))
            break;
    }
    CHECK(sqlite3_exec(raw, "COMMIT", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_prepare_v2(raw, "SELECT count(*), coalesce(sum(rows), 0) FROM subject_runs", -1, &st,
                       NULL);
    if (sqlite3_step(st) == SQLITE_ROW) {
        runs = sqlite3_column_int64(st, 0);
        indexed = sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    /* NREC receipts and ~NREC/4 other events: at least three full runs, and a tail */
    CHECKF(runs >= 3, "%lld subject runs, expected at least 3", (long long)runs);
    CHECK(indexed > 0);
    printf("subject runs: %d receipts, %lld runs holding %lld rows\n", NREC, (long long)runs,
           (long long)indexed);

    die_if(stw_open(data, NULL, &db, &err) != STW_OK, "open runs store", &err);
    memset(&admin, 0, sizeof admin);
    snprintf(admin.id, sizeof admin.id, "admin");
    admin.roles = STW_ROLE_ADMIN;
    check_runs_tamper(db, &admin, raw);
    for (int w = 0; w < 3 * RUN_SUBJECTS; w++) {
        int sj = w % RUN_SUBJECTS;
        int64_t since = STW_TIME_NONE, until = STW_TIME_NONE;
        char subject[16], *json = NULL;
        cJSON *doc;
        const cJSON *d, *c;
        size_t got = 0, want = 0;
        int order_ok = 1, match = 1;
        int64_t last_at = INT64_MIN;

        snprintf(subject, sizeof subject, "patient-%02d", sj);
        if (w >= RUN_SUBJECTS) { /* a random window, sometimes on a receipt's own millisecond */
            since = rec[rnd() % NREC].at + (w % 3 == 0 ? 0 : (int64_t)(rnd() % 3600000));
            until = since + (int64_t)(rnd() % (3 * DAY));
        }
        if (!CHECK(stw_audit_disclosures(db, &admin, subject, since, until, &json, &err) ==
                   STW_OK))
            continue;
        doc = cJSON_Parse(json);
        /* walk the answer and brute force together: receipts in order, hits by rank */
        {
            cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(doc, "disclosures"))
            {
                const char *qid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(d, "query_id"));
                int qi = qid ? atoi(qid + 2) : -1;
                if (qi < 0 || qi >= NREC || rec[qi].at < last_at)
                    order_ok = 0;
                else
                    last_at = rec[qi].at;
                cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(d, "chunks"))
                {
                    int rank = (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "rank"));
                    got++;
                    if (qi < 0 || qi >= NREC || rank < 1 || (size_t)rank > rec[qi].n ||
                        rec[qi].subj[rank - 1] != sj)
                        match = 0;
                }
            }
        }
        for (int i = 0; i < NREC; i++) {
            if ((since != STW_TIME_NONE && rec[i].at < since) ||
                (until != STW_TIME_NONE && rec[i].at >= until))
                continue;
            for (size_t h = 0; h < rec[i].n; h++)
                want += rec[i].subj[h] == sj;
        }
        CHECKF(match && order_ok && got == want,
               "disclosures of %s in window %d: %zu rows (expected %zu), all theirs %d, in order %d",
               subject, w, got, want, match, order_ok);
        cJSON_Delete(doc);
        free(json);
    }
    stw_close(db);
    sqlite3_close(raw);
    free(rec);
    {
        char cmd[160];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
        CHECK(system(cmd) == 0);
    }
}

/* ---- verify helpers ---------------------------------------------------------------------- */

/* stw_audit_verify (pinned when pin != NULL): 1 if ok; *bad gets first_bad_seq (0 if ok). */
static int verify(stw_db *db, const stw_principal *aud, const stw_audit_pin *pin, int64_t *bad,
                  int64_t *events)
{
    char *json = NULL;
    stw_error err;
    cJSON *root;
    int ok;

    if (!CHECKF(stw_audit_verify_pinned(db, aud, pin, &json, &err) == STW_OK, "verify: %s",
                err.message))
        return -1;
    root = cJSON_Parse(json);
    ok = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "ok"));
    if (bad != NULL)
        *bad =
            (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(root, "first_bad_seq"));
    if (bad != NULL && ok)
        *bad = 0;
    if (events != NULL)
        *events = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(root, "events"));
    cJSON_Delete(root);
    free(json);
    return ok;
}

static int64_t count_rows(sqlite3 *raw, const char *table)
{
    char sql[128];
    sqlite3_stmt *st = NULL;
    int64_t n = -1;
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", table);
    if (sqlite3_prepare_v2(raw, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

static int exec_ok(sqlite3 *raw, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(raw, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        fprintf(stderr, "sql failed: %s: %s\n", sql, msg ? msg : "?");
    sqlite3_free(msg);
    return rc == SQLITE_OK;
}

static const char *const no_update =
    "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events"
    "  BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;";
static const char *const no_delete =
    "CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events"
    "  BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;";

/* (a) every column of every row */
static void check_tamper(struct fixture *fx, sqlite3 *raw)
{
    /* each case changes one field of row ?1 and nothing else */
    static const struct {
        const char *what, *sql;
    } cases[] = {
        {"seq renumbered", "UPDATE audit_events SET seq = seq + 1000000 WHERE seq = ?1"},
        {"at_ms + 1", "UPDATE audit_events SET at_ms = at_ms + 1 WHERE seq = ?1"},
        {"at_ms - 1", "UPDATE audit_events SET at_ms = at_ms - 1 WHERE seq = ?1"},
        {"at_ms as REAL (same integer part)",
         "UPDATE audit_events SET at_ms = at_ms + 0.25 WHERE seq = ?1"},
        {"type", "UPDATE audit_events SET type = type || 'x' WHERE seq = ?1"},
        {"principal", "UPDATE audit_events SET principal = coalesce(principal || 'x', 'mallory')"
                      " WHERE seq = ?1"},
        {"principal removed", "UPDATE audit_events SET principal = CASE WHEN principal IS NULL"
                              " THEN 'admin' ELSE NULL END WHERE seq = ?1"},
        {"detail content", "UPDATE audit_events SET detail = json_set(detail, '$.tampered', 1)"
                           " WHERE seq = ?1"},
        {"detail re-indented", "UPDATE audit_events SET detail = ' ' || detail WHERE seq = ?1"},
        {"prev_hash", "UPDATE audit_events SET prev_hash = substr(prev_hash, 1, 70) ||"
                      " CASE substr(prev_hash, 71) WHEN '0' THEN '1' ELSE '0' END WHERE seq = ?1"},
        {"hash", "UPDATE audit_events SET hash = substr(hash, 1, 70) ||"
                 " CASE substr(hash, 71) WHEN '0' THEN '1' ELSE '0' END WHERE seq = ?1"},
        {"hash as BLOB", "UPDATE audit_events SET hash = CAST(hash AS BLOB) WHERE seq = ?1"},
    };
    const size_t ncases = sizeof cases / sizeof cases[0];
    int64_t n = count_rows(raw, "audit_events"), missed = 0, runs = 0;

    if (!CHECK(exec_ok(raw, "CREATE TEMP TABLE orig AS SELECT * FROM main.audit_events")) ||
        !CHECK(exec_ok(raw, "DROP TRIGGER audit_events_no_update")))
        return;
    for (int64_t seq = 1; seq <= n; seq++) {
        for (size_t c = 0; c < ncases; c++) {
            sqlite3_stmt *st = NULL;
            int64_t bad = -1;
            int ok;

            sqlite3_prepare_v2(raw, cases[c].sql, -1, &st, NULL);
            sqlite3_bind_int64(st, 1, seq);
            if (!CHECKF(sqlite3_step(st) == SQLITE_DONE && sqlite3_changes(raw) == 1,
                        "tamper %s at %lld: %s", cases[c].what, (long long)seq,
                        sqlite3_errmsg(raw))) {
                sqlite3_finalize(st);
                continue;
            }
            sqlite3_finalize(st);
            ok = verify(fx->db, &fx->aud, NULL, &bad, NULL);
            runs++;
            if (!CHECKF(ok == 0 && bad == seq, "%s at seq %lld: ok=%d first_bad_seq=%lld",
                        cases[c].what, (long long)seq, ok, (long long)bad))
                missed++;
            /* restore the row exactly (orig keeps each value's storage class) */
            for (int k = 0; k < 2; k++) {
                static const char *const restore[] = {
                    "UPDATE main.audit_events SET seq = ?1 WHERE seq = ?1 + 1000000",
                    "UPDATE main.audit_events SET at_ms = o.at_ms, type = o.type,"
                    " principal = o.principal, detail = o.detail, prev_hash = o.prev_hash,"
                    " hash = o.hash FROM temp.orig o WHERE o.seq = ?1"
                    " AND main.audit_events.seq = ?1"};
                sqlite3_prepare_v2(raw, restore[k], -1, &st, NULL);
                sqlite3_bind_int64(st, 1, seq);
                CHECK(sqlite3_step(st) == SQLITE_DONE);
                sqlite3_finalize(st);
            }
        }
        CHECKF(verify(fx->db, &fx->aud, NULL, NULL, NULL) == 1, "restored row %lld verifies",
               (long long)seq);
    }
    printf("tamper: %lld events x %zu single-field changes: %lld verify runs, %lld missed\n",
           (long long)n, ncases, (long long)runs, (long long)missed);
    CHECK(exec_ok(raw, no_update));
    CHECK(exec_ok(raw, "DROP TABLE temp.orig"));
}

/* (a') the lineage: a query event carries its receipt's SHA-256, and verify checks the receipt
 * row and its disclosure rows against it. For a sample of queries, every column of the
 * receipt row and of each disclosure row, changed alone, and a disclosure row removed or
 * added, make verify name that query's event. */
static void check_tamper_lineage(struct fixture *fx, sqlite3 *raw)
{
    static const struct {
        const char *col, *expr;
    } rcols[] = {{"query_id", "query_id || 'x'"}, {"seq", "seq + 1"},
                 {"at_ms", "at_ms + 1"},          {"principal", "principal || 'x'"},
                 {"purpose", "'HMARKT'"},         {"policy_version", "policy_version + 1"},
                 {"results", "results + 1"},      {"receipt", "json_set(receipt, '$.k', 99)"}},
      dcols[] = {{"query_id", "query_id || 'x'"},
                 {"rank", "rank + 100"},
                 {"at_ms", "at_ms + 1"},
                 {"principal", "principal || 'x'"},
                 {"purpose", "purpose || 'x'"},
                 {"product", "product || 'x'"},
                 {"version", "version || 'x'"},
                 {"chunk_id", "chunk_id || 'x'"},
                 {"source_system", "coalesce(source_system || 'x', 'x')"},
                 {"document_id", "coalesce(document_id || 'x', 'x')"},
                 {"subject", "coalesce(subject || 'x', 'x')"}};
    static const char *const restore[] = {
        "DELETE FROM main.receipts WHERE query_id IN (?1, ?1 || 'x')",
        "DELETE FROM main.disclosures WHERE query_id IN (?1, ?1 || 'x')",
        "INSERT INTO main.receipts SELECT * FROM temp.rorig WHERE query_id = ?1",
        "INSERT INTO main.disclosures SELECT * FROM temp.dorig WHERE query_id = ?1"};
    size_t sampled = 0, runs = 0, missed = 0;

    if (!CHECK(exec_ok(raw,
                       "CREATE TEMP TABLE rorig AS SELECT * FROM main.receipts;"
                       "CREATE TEMP TABLE dorig AS SELECT * FROM main.disclosures;"
                       "DROP TRIGGER receipts_no_update; DROP TRIGGER receipts_no_delete;"
                       "DROP TRIGGER disclosures_no_update; DROP TRIGGER disclosures_no_delete;")))
        return;
    for (size_t i = 0; i < nobs; i++) {
        const char *qid = obs[i].qid;
        sqlite3_stmt *st = NULL;
        int64_t seq = 0;
        size_t ncase;

        if (i % 8 != 0 && obs[i].n > 0)
            continue; /* a sample, plus every query with no results */
        sampled++;
        sqlite3_prepare_v2(raw, "SELECT seq FROM main.receipts WHERE query_id = ?1", -1, &st, NULL);
        sqlite3_bind_text(st, 1, qid, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW)
            seq = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        if (!CHECK(seq > 0))
            continue;
        ncase = 8 + 11 * obs[i].n + 2;
        for (size_t c = 0; c < ncase; c++) {
            char sql[256], what[96];
            int64_t bad = -1;
            int ok;

            if (c < 8) {
                snprintf(sql, sizeof sql, "UPDATE main.receipts SET %s = %s WHERE query_id = ?1",
                         rcols[c].col, rcols[c].expr);
                snprintf(what, sizeof what, "receipt.%s", rcols[c].col);
            } else if (c < 8 + 11 * obs[i].n) {
                size_t row = (c - 8) / 11, col = (c - 8) % 11;
                snprintf(sql, sizeof sql,
                         "UPDATE main.disclosures SET %s = %s WHERE query_id = ?1 AND rank = %zu",
                         dcols[col].col, dcols[col].expr, row + 1);
                snprintf(what, sizeof what, "disclosure rank %zu .%s", row + 1, dcols[col].col);
            } else if (c == ncase - 2) {
                snprintf(sql, sizeof sql,
                         "INSERT INTO main.disclosures(query_id, rank, at_ms, principal, purpose,"
                         " product, version, chunk_id) SELECT query_id, 99, at_ms, principal,"
                         " purpose, 'notes', 'v1', 'n00' FROM main.receipts WHERE query_id = ?1");
                snprintf(what, sizeof what, "a disclosure row added");
            } else {
                if (obs[i].n == 0)
                    continue;
                snprintf(sql, sizeof sql,
                         "DELETE FROM main.disclosures WHERE query_id = ?1 AND rank = 1");
                snprintf(what, sizeof what, "a disclosure row removed");
            }
            sqlite3_prepare_v2(raw, sql, -1, &st, NULL);
            sqlite3_bind_text(st, 1, qid, -1, SQLITE_STATIC);
            if (!CHECKF(sqlite3_step(st) == SQLITE_DONE && sqlite3_changes(raw) == 1,
                        "%s of %s: %s", what, qid, sqlite3_errmsg(raw))) {
                sqlite3_finalize(st);
                continue;
            }
            sqlite3_finalize(st);
            ok = verify(fx->db, &fx->aud, NULL, &bad, NULL);
            runs++;
            if (!CHECKF(ok == 0 && bad == seq, "%s of query event %lld: ok=%d first_bad_seq=%lld",
                        what, (long long)seq, ok, (long long)bad))
                missed++;
            for (int k = 0; k < 4; k++) {
                sqlite3_prepare_v2(raw, restore[k], -1, &st, NULL);
                sqlite3_bind_text(st, 1, qid, -1, SQLITE_STATIC);
                CHECK(sqlite3_step(st) == SQLITE_DONE);
                sqlite3_finalize(st);
            }
        }
        CHECKF(verify(fx->db, &fx->aud, NULL, NULL, NULL) == 1, "restored query %s verifies", qid);
    }
    printf("lineage: %zu queries' receipts and disclosure rows, %zu single changes, %zu missed\n",
           sampled, runs, missed);
    CHECK(exec_ok(raw, "CREATE TRIGGER receipts_no_update BEFORE UPDATE ON receipts"
                       "  BEGIN SELECT RAISE(ABORT, 'receipts are append-only'); END;"
                       "CREATE TRIGGER receipts_no_delete BEFORE DELETE ON receipts"
                       "  BEGIN SELECT RAISE(ABORT, 'receipts are append-only'); END;"
                       "CREATE TRIGGER disclosures_no_update BEFORE UPDATE ON disclosures"
                       "  BEGIN SELECT RAISE(ABORT, 'disclosures are append-only'); END;"
                       "CREATE TRIGGER disclosures_no_delete BEFORE DELETE ON disclosures"
                       "  BEGIN SELECT RAISE(ABORT, 'disclosures are append-only'); END;"
                       "DROP TABLE temp.rorig; DROP TABLE temp.dorig;"));
}

/* (c) the triggers refuse UPDATE and DELETE and change nothing */
static void check_triggers(struct fixture *fx, sqlite3 *raw)
{
    static const char *const refused[] = {
        "UPDATE audit_events SET type = 'x' WHERE seq = 1",
        "UPDATE audit_events SET at_ms = at_ms",
        "DELETE FROM audit_events WHERE seq = (SELECT max(seq) FROM audit_events)",
        "DELETE FROM audit_events",
        "UPDATE receipts SET results = 0",
        "DELETE FROM receipts",
        "UPDATE disclosures SET subject = 'patient-0'",
        "DELETE FROM disclosures",
    };
    int64_t events = count_rows(raw, "audit_events"), receipts = count_rows(raw, "receipts");
    int64_t disclosures = count_rows(raw, "disclosures");

    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        char *msg = NULL;
        int rc = sqlite3_exec(raw, refused[i], NULL, NULL, &msg);
        CHECKF(rc == SQLITE_CONSTRAINT && msg != NULL && strstr(msg, "append-only") != NULL,
               "'%s' was not refused (rc %d: %s)", refused[i], rc, msg ? msg : "");
        sqlite3_free(msg);
    }
    CHECK_EQ_INT(count_rows(raw, "audit_events"), events);
    CHECK_EQ_INT(count_rows(raw, "receipts"), receipts);
    CHECK_EQ_INT(count_rows(raw, "disclosures"), disclosures);
    CHECK(verify(fx->db, &fx->aud, NULL, NULL, NULL) == 1);
}

/* ---- (f) FHIR export --------------------------------------------------------------------- */

struct lines {
    size_t n, cap;
    char **v;
};

static int collect(void *ctx, const char *line)
{
    struct lines *l = ctx;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        char **v = realloc(l->v, cap * sizeof *v);
        if (v == NULL)
            return 1;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = util_strdup(line);
    return 0;
}

static const cJSON *chain_field(const cJSON *ev, const char *name)
{
    const cJSON *ext = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(ev, "extension"), 0), *x;
    if (!cJSON_IsObject(ext) ||
        strcmp(nz(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ext, "url"))),
               "urn:steward:fhir:audit-chain") != 0)
        return NULL;
    cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(ext, "extension"))
    {
        if (strcmp(nz(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(x, "url"))), name) == 0)
            return cJSON_GetObjectItemCaseSensitive(x, "valueString");
    }
    return NULL;
}

static const char *fstr(const cJSON *o, const char *dotted)
{
    char buf[128], *save = NULL, *part;
    snprintf(buf, sizeof buf, "%s", dotted);
    for (part = strtok_r(buf, ".", &save); part != NULL && o != NULL;
         part = strtok_r(NULL, ".", &save))
        o = cJSON_IsArray(o) ? cJSON_GetArrayItem(o, atoi(part))
                             : cJSON_GetObjectItemCaseSensitive(o, part);
    return cJSON_GetStringValue(o);
}

static void check_export(struct fixture *fx)
{
    struct lines l = {0, 0, NULL};
    stw_error err;
    char prev[STW_HASH_STR_MAX] = AUDIT_GENESIS;
    int64_t events = 0;
    size_t queries = 0;

    CHECK(verify(fx->db, &fx->aud, NULL, NULL, &events) == 1);
    if (!CHECKF(stw_audit_export_fhir(fx->db, &fx->aud, STW_TIME_NONE, STW_TIME_NONE, collect, &l,
                                      &err) == STW_OK,
                "export: %s", err.message))
        return;
    CHECK_EQ_INT((int64_t)l.n, events);
    for (size_t i = 0; i < l.n; i++) {
        cJSON *ev = cJSON_Parse(l.v[i]);
        const cJSON *seq_v = chain_field(ev, "seq"), *type_v = chain_field(ev, "type");
        const cJSON *detail_v = chain_field(ev, "detail"), *prev_v = chain_field(ev, "prev_hash");
        const cJSON *hash_v = chain_field(ev, "hash");
        const char *type = cJSON_GetStringValue(type_v), *who, *recorded;
        char want_id[32], *canon = NULL, hash[STW_HASH_STR_MAX];
        unsigned char digest[SHA256_LEN];

        if (!CHECKF(ev != NULL && seq_v && type && detail_v && prev_v && hash_v,
                    "line %zu is not an AuditEvent with its chain fields", i))
            continue;
        CHECK(strstr(l.v[i], "SECRET-CHUNK-TEXT") == NULL);
        snprintf(want_id, sizeof want_id, "%zu", i + 1);
        CHECK_EQ_STR(fstr(ev, "resourceType"), "AuditEvent");
        CHECK_EQ_STR(fstr(ev, "id"), want_id);
        CHECK_EQ_STR(cJSON_GetStringValue(seq_v), want_id);
        recorded = fstr(ev, "recorded");
        CHECK(recorded != NULL && strlen(recorded) == 24 && recorded[23] == 'Z');
        CHECK(fstr(ev, "type.system") != NULL && fstr(ev, "type.code") != NULL);
        CHECK_EQ_STR(fstr(ev, "subtype.1.system"), "urn:steward:audit-event-type");
        CHECK_EQ_STR(fstr(ev, "subtype.1.code"), type);
        CHECK_EQ_STR(fstr(ev, "source.observer.display"), "steward");
        CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(
            cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(ev, "agent"), 0), "requestor")));
        who = fstr(ev, "agent.0.who.identifier.value");
        if (strcmp(type, "query") == 0 || strcmp(type, "query_denied") == 0) {
            const cJSON *ents = cJSON_GetObjectItemCaseSensitive(ev, "entity"), *e;
            cJSON *detail = cJSON_Parse(cJSON_GetStringValue(detail_v));
            const char *purpose = fstr(detail, "purpose");
            CHECK_EQ_STR(fstr(ev, "type.code"), "rest");
            CHECK_EQ_STR(fstr(ev, "subtype.0.code"), "search-type");
            CHECK_EQ_STR(fstr(ev, "action"), "E");
            CHECK_EQ_STR(fstr(ev, "outcome"), strcmp(type, "query") == 0 ? "0" : "4");
            CHECK(who != NULL && strncmp(who, "consumer-", 9) == 0);
            CHECK_EQ_STR(fstr(ev, "agent.0.purposeOfUse.0.coding.0.system"),
                         "http://terminology.hl7.org/CodeSystem/v3-ActReason");
            CHECK_EQ_STR(fstr(ev, "agent.0.purposeOfUse.0.coding.0.code"), purpose);
            if (strcmp(type, "query") == 0) {
                /* find what the run observed for this query */
                const char *qid = fstr(detail, "query_id");
                const struct observed *o = NULL;
                size_t nchunk = 0, npatient = 0, nquery = 0, subjects = 0;
                for (size_t k = 0; k < nobs && qid != NULL; k++)
                    if (strcmp(obs[k].qid, qid) == 0)
                        o = &obs[k];
                queries++;
                if (!CHECKF(o != NULL, "export: query %s was not observed", qid ? qid : "?")) {
                    cJSON_Delete(detail);
                    cJSON_Delete(ev);
                    continue;
                }
                for (int s = 0; s < NSUBJ; s++) {
                    int hit = 0;
                    for (size_t r = 0; r < o->n; r++)
                        hit |= chunk_subject(o->chunk[r]) == s;
                    subjects += (size_t)hit;
                }
                cJSON_ArrayForEach(e, ents)
                {
                    const char *role = fstr(e, "role.code"),
                               *val = fstr(e, "what.identifier.value");
                    if (role != NULL && strcmp(role, "24") == 0) {
                        const cJSON *d;
                        int has_pv = 0;
                        nquery++;
                        CHECK_EQ_STR(val, qid);
                        cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(e, "detail"))
                        {
                            has_pv |= strcmp(nz(fstr(d, "type")), "policy_version") == 0;
                        }
                        CHECK(has_pv);
                    } else if (role != NULL && strcmp(role, "1") == 0) {
                        npatient++;
                        CHECK(val != NULL && strncmp(val, "patient-", 8) == 0);
                        CHECK_EQ_STR(fstr(e, "type.code"), "1");
                    } else {
                        char want[STW_NAME_MAX + 32];
                        CHECK_EQ_STR(fstr(e, "what.identifier.system"), "urn:steward:chunk");
                        if (nchunk < o->n)
                            snprintf(want, sizeof want, "%s@v1/%c%02d", o->product[nchunk],
                                     o->product[nchunk][0], o->chunk[nchunk]);
                        CHECK(nchunk < o->n && val != NULL && strcmp(val, want) == 0);
                        nchunk++;
                    }
                }
                CHECK_EQ_INT(nquery, 1);
                CHECK_EQ_INT(nchunk, o->n);
                CHECK_EQ_INT(npatient, subjects);
            }
            cJSON_Delete(detail);
        } else if (strcmp(type, "auth_failed") == 0) {
            CHECK_EQ_STR(fstr(ev, "outcome"), "4");
            CHECK_EQ_STR(fstr(ev, "type.code"), "110114");
        } else if (strcmp(type, "grant") == 0) {
            CHECK_EQ_STR(fstr(ev, "action"), "C");
            CHECK_EQ_STR(fstr(ev, "entity.0.what.identifier.system"), "urn:steward:grant");
        }
        /* the export alone re-verifies the chain: hash = SHA-256(prev_hash || canonical) */
        {
            cJSON *pj = who ? cJSON_CreateString(who) : cJSON_CreateNull();
            cJSON *tj = cJSON_CreateString(type), *aj = cJSON_CreateString(nz(recorded));
            char *ps = cJSON_PrintUnformatted(pj), *ts = cJSON_PrintUnformatted(tj);
            char *as = cJSON_PrintUnformatted(aj);
            const char *detail = cJSON_GetStringValue(detail_v);
            size_t n = strlen(prev) + strlen(detail) + strlen(ps) + strlen(ts) + strlen(as) + 100;
            canon = malloc(n);
            snprintf(canon, n,
                     "%s{\"at\":%s,\"detail\":%s,\"principal\":%s,\"seq\":%s,\"type\":%s}", prev,
                     as, detail, ps, want_id, ts);
            util_sha256(canon, strlen(canon), digest);
            util_hash_str(digest, hash);
            CHECK_EQ_STR(cJSON_GetStringValue(prev_v), prev);
            CHECKF(strcmp(hash, cJSON_GetStringValue(hash_v)) == 0,
                   "export line %zu does not re-verify", i + 1);
            snprintf(prev, sizeof prev, "%s", cJSON_GetStringValue(hash_v));
            free(canon);
            cJSON_free(ps);
            cJSON_free(ts);
            cJSON_free(as);
            cJSON_Delete(pj);
            cJSON_Delete(tj);
            cJSON_Delete(aj);
        }
        cJSON_Delete(ev);
    }
    CHECK_EQ_INT(queries, nobs);
    printf("export: %zu AuditEvent lines, %zu queries\n", l.n, queries);
    for (size_t i = 0; i < l.n; i++)
        free(l.v[i]);
    free(l.v);
    /* a window after the last event exports nothing */
    l = (struct lines){0, 0, NULL};
    CHECK(stw_audit_export_fhir(fx->db, &fx->aud, util_now_ms() + DAY, STW_TIME_NONE, collect, &l,
                                &err) == STW_OK);
    CHECK_EQ_INT(l.n, 0);
    free(l.v);
    /* consumers may not */
    CHECK_EQ_INT(stw_audit_export_fhir(fx->db, &fx->cons[0], STW_TIME_NONE, STW_TIME_NONE, collect,
                                       &l, &err),
                 STW_FORBIDDEN);
}

/* ---- (e) the receipt cannot be written --------------------------------------------------- */

static int grant_of(const struct fixture *fx, int *c_out, int *purpose_out)
{
    for (int c = 0; c < NCONS; c++)
        for (int i = 0; i < 3; i++)
            if ((fx->granted[c][0] >> purposes[i]) & 1u) {
                *c_out = c;
                *purpose_out = purposes[i];
                return 1;
            }
    return 0;
}

static stw_code one_query_on(stw_db *db, struct fixture *fx, int c, int purpose, stw_answer **a,
                             stw_error *err)
{
    stw_product_ref ref = {"notes", NULL, STW_TIME_NONE};
    float v[DIM];
    stw_query q;

    for (int j = 0; j < DIM; j++)
        v[j] = frnd();
    memset(&q, 0, sizeof q);
    q.vector = v;
    q.dim = DIM;
    q.k = 5;
    q.purpose = purpose;
    q.nproducts = 1;
    q.products = &ref;
    q.filter.created_from = q.filter.created_to = STW_TIME_NONE;
    q.include = STW_INC_ALL;
    return stw_query_run(db, &fx->cons[c], &q, a, err);
}

static stw_code one_query(struct fixture *fx, int c, int purpose, stw_answer **a, stw_error *err)
{
    return one_query_on(fx->db, fx, c, purpose, a, err);
}

static void check_unavailable(struct fixture *fx, sqlite3 *raw)
{
    struct rlimit old, lim;
    int c = 0, purpose = 0, busy = -1;
    int64_t ev0, rc0, dc0;
    stw_answer *a = NULL;
    stw_error err;
    stw_code rc;
    sqlite3_stmt *st = NULL;

    if (!CHECK(grant_of(fx, &c, &purpose)))
        return;
    ev0 = count_rows(raw, "audit_events");
    rc0 = count_rows(raw, "receipts");
    dc0 = count_rows(raw, "disclosures");
    /* an empty WAL: the receipt's commit has to grow it, and that write will fail */
    sqlite3_prepare_v2(raw, "PRAGMA wal_checkpoint(TRUNCATE)", -1, &st, NULL);
    if (sqlite3_step(st) == SQLITE_ROW)
        busy = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    CHECK_EQ_INT(busy, 0);
    signal(SIGXFSZ, SIG_IGN); /* EFBIG instead of the signal */
    CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0);
    lim = old;
    lim.rlim_cur = 1;
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    rc = one_query(fx, c, purpose, &a, &err);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, SIG_DFL);
    CHECK_EQ_INT(rc, STW_UNAVAILABLE);
    CHECK_EQ_STR(err.name, "audit_unavailable");
    CHECK(strstr(err.message, "withheld") != NULL);
    CHECK(a == NULL); /* no answer */
    stw_answer_free(a);
    a = NULL;
    /* nothing half-written (verify first: a trail read waits for the receipt journal) */
    CHECK(verify(fx->db, &fx->aud, NULL, NULL, NULL) == 1);
    CHECK_EQ_INT(count_rows(raw, "audit_events"), ev0);
    CHECK_EQ_INT(count_rows(raw, "receipts"), rc0);
    CHECK_EQ_INT(count_rows(raw, "disclosures"), dc0);
    /* and the store works again once it can grow */
    rc = one_query(fx, c, purpose, &a, &err);
    CHECKF(rc == STW_OK, "query after the store recovered: %s", err.message);
    stw_answer_free(a);
    CHECK(verify(fx->db, &fx->aud, NULL, NULL, NULL) == 1);
    CHECK_EQ_INT(count_rows(raw, "receipts"), rc0 + 1);
    printf("503: receipt write failed with the store full, answer withheld, nothing written\n");
}

/* ---- (d''') two handles on one store: one owns the receipt journal ------------------------ */

/* A second stw_db on the same folder (another process would do the same) cannot own the
 * receipt journal (the first holds its lock): it commits each receipt before its answer
 * instead. Its receipts and the first handle's journaled ones interleave in one chain: the
 * committed ones are readable at once through the first handle, the journaled ones through
 * the handle that owns the journal (its reads wait for it), and verify passes. */
static void check_two_handles(struct fixture *fx)
{
    stw_db *second = NULL;
    stw_receipt_stats rs1, rs2;
    stw_error err;
    int c = 0, purpose = 0, ok = 0;

    if (!CHECK(grant_of(fx, &c, &purpose)))
        return;
    die_if(stw_open(fx->data, NULL, &second, &err) != STW_OK, "open a second handle", &err);
    stw_receipt_stats_get(fx->db, &rs1);
    stw_receipt_stats_get(second, &rs2);
    CHECK_EQ_INT(rs1.journal, 1);
    CHECK_EQ_INT(rs2.journal, 0);
    for (int i = 0; i < 6; i++) {
        stw_db *by = i % 2 ? second : fx->db, *other = i % 2 ? fx->db : second;
        stw_answer *a = NULL;
        char *json = NULL;
        if (!CHECKF(one_query_on(by, fx, c, purpose, &a, &err) == STW_OK, "query %d: %s", i,
                    err.message))
            break;
        /* the journaled receipt is read through the handle that owns the journal (its read
         * waits for it); the committed one through either */
        if (CHECKF(stw_audit_query_get(i % 2 ? other : by, &fx->aud, a->query_id, &json, &err) ==
                       STW_OK,
                   "receipt %s of handle %d: %s", a->query_id, i % 2, err.message))
            ok++;
        free(json);
        stw_answer_free(a);
    }
    CHECK_EQ_INT(ok, 6);
    CHECK(verify(second, &fx->aud, NULL, NULL, NULL) == 1);
    stw_close(second);
    printf("two handles: the second commits its receipts (no journal), 6 receipts readable, "
           "verify ok\n");
}

/* ---- (d'''') a backlog larger than the indexer's read window ------------------------------ */

/* With SQLite's write lock held by another connection, queries are still answered (their
 * receipts are journaled) and pile up: 1,500 receipts, ~1 MB, more than the indexer reads in
 * one step (STW_JOURNAL_READ_BYTES, 512 KiB), so its windows end inside records. Once the lock
 * goes, a trail read waits for them and every one is in the trail, in order, and verify
 * passes. (A window ending inside a record's 8-byte header was taken for damage: a review
 * found it dropping or blocking every receipt after it.) */
static void check_backlog(struct fixture *fx, sqlite3 *raw)
{
    enum { NQ = 1500 };
    int c = 0, purpose = 0, answered = 0;
    int64_t rc0, ev0;
    stw_receipt_stats rs;
    stw_error err;

    if (!CHECK(grant_of(fx, &c, &purpose)))
        return;
    CHECK(verify(fx->db, &fx->aud, NULL, NULL, NULL) == 1); /* the trail caught up */
    rc0 = count_rows(raw, "receipts");
    ev0 = count_rows(raw, "audit_events");
    if (!CHECK(sqlite3_exec(raw, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK))
        return;
    for (int i = 0; i < NQ; i++) {
        stw_answer *a = NULL;
        if (one_query(fx, c, purpose, &a, &err) == STW_OK)
            answered++;
        stw_answer_free(a);
    }
    stw_receipt_stats_get(fx->db, &rs);
    CHECK(sqlite3_exec(raw, "ROLLBACK", NULL, NULL, NULL) == SQLITE_OK);
    CHECK_EQ_INT(answered, NQ);
    CHECKF(rs.backlog_bytes > 512 * 1024, "backlog %llu bytes: not past one read window",
           rs.backlog_bytes);
    CHECK(verify(fx->db, &fx->aud, NULL, NULL, NULL) == 1);
    CHECK_EQ_INT(count_rows(raw, "receipts"), rc0 + NQ);
    CHECK_EQ_INT(count_rows(raw, "audit_events"), ev0 + NQ);
    printf("backlog: %d queries answered with the store locked, %llu bytes journaled, all %d "
           "receipts in the trail after it, verify ok\n", NQ, rs.backlog_bytes, NQ);
}

/* ---- (b) a cut-off tail against the pinned head, library and CLI -------------------------- */

/* Runs bin with args, stdout into out (cap bytes); returns the exit status or -1. */
static int run_cli(const char *bin, const char *const *args, char *out, size_t cap)
{
    int fd[2], status = -1;
    size_t n = 0;
    pid_t pid;

    if (pipe(fd) != 0)
        return -1;
    pid = fork();
    if (pid == 0) {
        const char *argv[12];
        size_t i = 0;
        argv[i++] = bin;
        for (; args[i - 1] != NULL && i < 11; i++)
            argv[i] = args[i - 1];
        argv[i] = NULL;
        dup2(fd[1], 1);
        close(fd[0]);
        close(fd[1]);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    close(fd[1]);
    for (;;) {
        ssize_t r = read(fd[0], out + n, cap - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        if (n == cap - 1)
            break;
    }
    out[n] = '\0';
    close(fd[0]);
    if (pid < 0 || waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void check_tail(struct fixture *fx, sqlite3 *raw)
{
    stw_audit_pin pin;
    stw_error err;
    char *json = NULL, out[4096], events_arg[32];
    cJSON *head;
    int64_t bad = 0, events = 0;

    if (!CHECK(stw_audit_head(fx->db, &fx->aud, &json, &err) == STW_OK))
        return;
    head = cJSON_Parse(json);
    memset(&pin, 0, sizeof pin);
    pin.events = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(head, "events"));
    snprintf(pin.head, sizeof pin.head, "%s",
             nz(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(head, "head"))));
    cJSON_Delete(head);
    free(json);
    json = NULL;
    CHECK_EQ_INT(pin.events, count_rows(raw, "audit_events"));
    CHECK(verify(fx->db, &fx->aud, &pin, &bad, NULL) == 1);
    CHECK(stw_audit_head(fx->db, &fx->cons[0], &json, &err) == STW_FORBIDDEN);
    {
        stw_audit_pin badpin = pin;
        badpin.head[10] = 'X';
        CHECK(stw_audit_verify_pinned(fx->db, &fx->aud, &badpin, &json, &err) == STW_INVALID);
    }

    /* the CLI agrees: head prints the same pin, and verify against it passes */
    if (fx->bin != NULL) {
        const char *head_args[] = {"audit", "head", "--data", fx->data, NULL};
        char want[160];
        snprintf(events_arg, sizeof events_arg, "%lld", (long long)pin.events);
        snprintf(want, sizeof want, "{\"events\":%lld,\"head\":\"%s\"}\n", (long long)pin.events,
                 pin.head);
        CHECK_EQ_INT(run_cli(fx->bin, head_args, out, sizeof out), 0);
        CHECK_EQ_STR(out, want);
        {
            const char *args[] = {"audit",  "verify",   "--data",   fx->data, "--head",
                                  pin.head, "--events", events_arg, NULL};
            CHECK_EQ_INT(run_cli(fx->bin, args, out, sizeof out), 0);
        }
    }

    /* cut off the last three events */
    CHECK(exec_ok(raw, "DROP TRIGGER audit_events_no_delete"));
    CHECK(exec_ok(raw, "DELETE FROM audit_events WHERE seq > (SELECT max(seq) - 3 FROM"
                       " audit_events)"));
    CHECK(exec_ok(raw, no_delete));
    CHECKF(verify(fx->db, &fx->aud, NULL, NULL, &events) == 1 && events == pin.events - 3,
           "without a pin a cut-off tail looks like a shorter, valid chain");
    CHECK(verify(fx->db, &fx->aud, &pin, &bad, NULL) == 0);
    CHECK_EQ_INT(bad, pin.events - 2);
    if (fx->bin != NULL) {
        const char *args[] = {"audit",  "verify",   "--data",   fx->data, "--head",
                              pin.head, "--events", events_arg, NULL};
        CHECK_EQ_INT(run_cli(fx->bin, args, out, sizeof out), 1);
        CHECK(strstr(out, "\"ok\":false") != NULL && strstr(out, "cut off") != NULL);
    }
    /* new events refill the chain past the pin: the pinned event is now another one */
    for (int i = 0; i < 4; i++) {
        stw_principal pr;
        char k2[STW_KEY_MAX];
        memset(&pr, 0, sizeof pr);
        snprintf(pr.id, sizeof pr.id, "late-%d", i);
        pr.roles = STW_ROLE_CONSUMER;
        CHECK(stw_principal_create(fx->db, &fx->admin, &pr, k2, &err) == STW_OK);
    }
    CHECK(verify(fx->db, &fx->aud, NULL, NULL, &events) == 1);
    CHECK(events > pin.events);
    CHECK(verify(fx->db, &fx->aud, &pin, &bad, NULL) == 0);
    CHECK_EQ_INT(bad, pin.events);
    printf("tail: cut-off and rewritten tails caught against the pinned head (%lld events)\n",
           (long long)pin.events);
}

int main(int argc, char **argv)
{
    struct fixture fx;
    sqlite3 *raw = NULL;
    int64_t t_mid = 0;
    char cmd[400];

    memset(&fx, 0, sizeof fx);
    fx.bin = argc > 1 ? argv[1] : NULL;
    {
        const char *e = getenv("STW_TEST_SEED");
        rng = e && *e ? strtoull(e, NULL, 0)
                      : ((uint64_t)time(NULL) * 2654435761u) ^ (uint64_t)getpid();
        if (rng == 0)
            rng = 1;
        printf("test_audit: seed %llu (STW_TEST_SEED)\n", (unsigned long long)rng);
    }
    build_store(&fx);
    run_queries(&fx, &t_mid);
    check_observed(&fx, t_mid);
    check_rollups();
    check_receipt_text();
    check_subject_runs();
    die_if(sqlite3_open_v2(fx.dbfile, &raw, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK, "raw", NULL);
    sqlite3_busy_timeout(raw, 5000);
    check_tamper(&fx, raw);
    check_tamper_lineage(&fx, raw);
    check_triggers(&fx, raw);
    check_export(&fx);
    check_unavailable(&fx, raw);
    check_two_handles(&fx);
    check_backlog(&fx, raw);
    check_tail(&fx, raw);
    sqlite3_close(raw);
    stw_close(fx.db);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx.root);
    CHECK(system(cmd) == 0);
    return check_summary("audit");
}
