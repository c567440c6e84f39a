/* bench_audit.c - the audit trail at scale: governance reads over a long history, the cost of
 * a receipt per query, and the speed of a full chain verification, in one process.
 *
 * 1. A store with one small product (by default 2,000 chunks, d=64, cosine: the query is cheap,
 *    so the receipt's share of a query is as large as it gets) and NPRINC consumers.
 * 2. A synthetic history of N audit events (default 1,000,000) spread evenly over the year
 *    after the store's setup (an event is never dated before its predecessor), appended through the private audit layer (audit_record_query / audit_append from
 *    src/audit.h) on a raw connection in transactions of 20,000 events, so the history takes
 *    seconds, not the hours that N real queries would. The events are real chain links: the
 *    same code as the service writes them, verified in step 5. Mix: 88 % queries (each with
 *    its receipt and 1-5 disclosure rows over 10,000 subjects), 4 % query_denied,
 *    3 % auth_failed, 3 % ingest, 2 % grant.
 * 3. Governance calls through the public API (stw_audit_events, stw_audit_query_get,
 *    stw_audit_disclosures, stw_usage), CALLS times each with random arguments: p50/p99/max.
 * 4. Query throughput through stw_query_run with receipts on and off (stw_options
 *    audit_receipts_off, which exists for this benchmark only), rounds alternating so that
 *    machine load hits both alike; 1, 2 and 8 query threads. With receipts on, a round's clock
 *    stops only when a trail read has seen every receipt of the round in the chain (the
 *    receipt journal writes them there behind the answers, src/journal.h). Q queries per
 *    round (default 4,000, ~0.3 s: with 1,000 that final wait and the indexer's cold start
 *    were a sixth of a round, and the figure measured them rather than the steady rate).
 * 5. stw_audit_verify over the whole chain: events/s.
 * Final line: `bench: audit_overhead=X governance_p99_ms=Y verify_events_per_s=Z`, with X the
 * single-thread 1 - qps(receipts on) / qps(receipts off).
 * Usage: bench_audit [--events N] [--queries Q] [--chunks N] [--dim D] [--dir DIR] (DIR is
 * kept; default a temp dir, removed at the end). */
#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "bench_common.h"
#include "steward.h"
#include "util.h"

#define NPRINC  20
#define NSUBJ   10000
#define CALLS   50
#define NROUNDS 6
#define QTHREADS_MAX 8 /* the most query threads of a throughput round */
#define NQIDS   256
#define YEAR_MS (365LL * 24 * 3600 * 1000)

static const int purposes[] = {STW_PURPOSE_TREAT, STW_PURPOSE_HOPERAT, STW_PURPOSE_HPAYMT,
                               STW_PURPOSE_HRESCH};

static void die(const char *what, const stw_error *err)
{
    fprintf(stderr, "bench_audit: %s failed: %s: %s\n", what, err ? err->name : "",
            err ? err->message : "");
    exit(1);
}

static void rand_vec(float *v, size_t d, uint64_t *s)
{
    for (size_t j = 0; j < d; j++)
        v[j] = (float)bench_gauss(s);
}

/* ---- 2. the synthetic history ---------------------------------------------------------- */

static void seed_history(const char *dbfile, size_t n, int64_t t0, int64_t t1, uint64_t *s,
                         char (*qids)[STW_QUERY_ID_MAX], size_t *nqids)
{
    sqlite3 *c = NULL;
    stw_error err;
    size_t every = n / NQIDS + 1;

    memset(&err, 0, sizeof err);
    if (sqlite3_open_v2(dbfile, &c, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
        die("raw open", NULL);
    sqlite3_busy_timeout(c, 5000);
    sqlite3_exec(c, "PRAGMA synchronous=OFF; PRAGMA cache_size=-262144", NULL, NULL, NULL);
    for (size_t i = 0; i < n; i++) {
        int64_t at = t0 + (int64_t)((double)(t1 - t0) * (double)i / (double)n);
        unsigned r = (unsigned)(bench_rand(s) % 100);
        char principal[16], detail[256];
        stw_code rc;

        if (i % 20000 == 0 && sqlite3_exec(c, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
            die("raw begin", NULL);
        snprintf(principal, sizeof principal, "c%02u", (unsigned)(bench_rand(s) % NPRINC));
        if (r < 88) {
            struct audit_hit hits[5];
            char chunk[5][16], subject[5][16], doc[5][16], qid[STW_QUERY_ID_MAX];
            char vhash[STW_HASH_STR_MAX];
            unsigned char digest[SHA256_LEN];
            uint64_t salt = bench_rand(s);
            struct audit_receipt rec;
            size_t nh = 1 + bench_rand(s) % 5;

            for (size_t h = 0; h < nh; h++) {
                snprintf(chunk[h], sizeof chunk[h], "h%06u", (unsigned)(bench_rand(s) % 200000));
                snprintf(subject[h], sizeof subject[h], "patient-%05u",
                         (unsigned)(bench_rand(s) % NSUBJ));
                snprintf(doc[h], sizeof doc[h], "doc-%06u", (unsigned)(bench_rand(s) % 100000));
                hits[h].rank = h + 1;
                hits[h].score = 0.9 - 0.01 * (double)h;
                hits[h].product = "notes";
                hits[h].version = "v1";
                hits[h].chunk_id = chunk[h];
                hits[h].source_system = "ehr";
                hits[h].document_id = doc[h];
                hits[h].subject = subject[h];
            }
            util_sha256(&salt, sizeof salt, digest);
            util_hash_str(digest, vhash);
            if (util_random_id("q_", 16, qid, sizeof qid) != 0)
                die("random id", NULL);
            memset(&rec, 0, sizeof rec);
            rec.query_id = qid;
            rec.principal = principal;
            rec.purpose = stw_purpose_name(purposes[bench_rand(s) % 4]);
            rec.at_ms = at;
            rec.policy_version = 1 + (int64_t)(i / 50000);
            rec.k = 10;
            rec.vector_sha256 = vhash;
            rec.versions_json = "[{\"product\":\"notes\",\"version\":\"v1\"}]";
            rec.nhits = nh;
            rec.hits = hits;
            rc = audit_record_query(c, NULL, &rec, &err);
            if (i % every == 0 && *nqids < NQIDS)
                snprintf(qids[(*nqids)++], STW_QUERY_ID_MAX, "%s", qid);
        } else if (r < 92) {
            rc = audit_append(c, at, "query_denied", principal,
                              "{\"product\":\"notes\",\"purpose\":\"HMARKT\","
                              "\"reason\":\"not_entitled\"}",
                              NULL, &err);
        } else if (r < 95) {
            rc = audit_append(c, at, "auth_failed", NULL, "{\"reason\":\"unknown_key\"}", NULL,
                              &err);
        } else if (r < 98) {
            snprintf(detail, sizeof detail,
                     "{\"accepted\":%u,\"product\":\"notes\",\"unchanged\":0,\"version\":\"v1\"}",
                     (unsigned)(bench_rand(s) % 10000));
            rc = audit_append(c, at, "ingest", "admin", detail, NULL, &err);
        } else {
            snprintf(detail, sizeof detail,
                     "{\"clearance\":\"N\",\"compartments\":[],\"grant\":\"g_%016llx\","
                     "\"policy_version\":%lld,\"principal\":\"%s\",\"product\":\"notes\","
                     "\"purposes\":[\"TREAT\"]}",
                     (unsigned long long)bench_rand(s), (long long)(1 + i / 50000), principal);
            rc = audit_append(c, at, "grant", "admin", detail, NULL, &err);
        }
        if (rc != STW_OK)
            die("history append", &err);
        if ((i + 1) % 20000 == 0 || i + 1 == n) {
            if (sqlite3_exec(c, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
                die("raw commit", NULL);
        }
    }
    sqlite3_exec(c, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
    sqlite3_close(c);
}

/* ---- 3. governance calls --------------------------------------------------------------- */

struct call_stats {
    const char *name;
    double lat[CALLS];
};

static void print_stats(struct call_stats *cs, double *all, size_t *nall)
{
    double v[CALLS];
    memcpy(v, cs->lat, sizeof v);
    memcpy(all + *nall, cs->lat, sizeof v);
    *nall += CALLS;
    printf("| %-40s | %7.2f | %7.2f | %7.2f |\n", cs->name, bench_pct(v, CALLS, 0.5),
           bench_pct(v, CALLS, 0.99), bench_pct(v, CALLS, 1.0));
}

static int64_t rand_time(uint64_t *s, int64_t t0, int64_t t1)
{
    return t0 + (int64_t)(bench_unif(s) * (double)(t1 - t0));
}

static double governance(stw_db *db, const stw_principal *aud, int64_t t0, int64_t t1,
                         size_t nevents, char (*qids)[STW_QUERY_ID_MAX], size_t nqids, uint64_t *s)
{
    static const char *const groups[] = {"principal", "product", "purpose"};
    enum { NTYPES = 14 };
    struct call_stats cs[NTYPES];
    double *all = malloc(NTYPES * CALLS * sizeof *all);
    size_t nall = 0;
    stw_error err;

    memset(cs, 0, sizeof cs);
    cs[0].name = "events: a page (limit 100, random cursor)";
    cs[1].name = "events: by principal (random cursor)";
    cs[2].name = "events: by type (grant)";
    cs[3].name = "events: one day (random)";
    cs[4].name = "events: principal + one week";
    cs[5].name = "events: type auth_failed + one day";
    cs[6].name = "receipt of a query (random id)";
    cs[7].name = "disclosures: a subject, all time";
    cs[8].name = "disclosures: a subject, one month";
    for (int g = 0; g < 3; g++) {
        static const char *const all_names[] = {"usage by principal, all time",
                                                "usage by product, all time",
                                                "usage by purpose, all time"};
        static const char *const win_names[] = {"usage by principal, random 30 days",
                                                "usage by product, random 30 days",
                                                "usage by purpose, random 30 days"};
        cs[9 + g].name = all_names[g];
        if (g < 2)
            cs[12 + g].name = win_names[g];
    }
    for (int i = 0; i < CALLS; i++) {
        for (int t = 0; t < NTYPES; t++) {
            stw_event_filter f = {STW_TIME_NONE, STW_TIME_NONE, NULL, NULL, 0, 100};
            char principal[16], subject[16], *json = NULL;
            int64_t day = 24LL * 3600 * 1000, since = rand_time(s, t0, t1 - 30 * day);
            double start;
            stw_code rc = STW_OK;

            snprintf(principal, sizeof principal, "c%02u", (unsigned)(bench_rand(s) % NPRINC));
            snprintf(subject, sizeof subject, "patient-%05u", (unsigned)(bench_rand(s) % NSUBJ));
            start = bench_now();
            switch (t) {
            case 0:
                f.after_seq = (int64_t)(bench_rand(s) % nevents);
                rc = stw_audit_events(db, aud, &f, &json, &err);
                break;
            case 1:
                f.after_seq = (int64_t)(bench_rand(s) % nevents);
                f.principal = principal;
                rc = stw_audit_events(db, aud, &f, &json, &err);
                break;
            case 2:
                f.type = "grant";
                f.after_seq = (int64_t)(bench_rand(s) % nevents);
                rc = stw_audit_events(db, aud, &f, &json, &err);
                break;
            case 3:
                f.since_ms = since;
                f.until_ms = since + day;
                rc = stw_audit_events(db, aud, &f, &json, &err);
                break;
            case 4:
                f.principal = principal;
                f.since_ms = since;
                f.until_ms = since + 7 * day;
                rc = stw_audit_events(db, aud, &f, &json, &err);
                break;
            case 5:
                f.type = "auth_failed";
                f.since_ms = since;
                f.until_ms = since + day;
                rc = stw_audit_events(db, aud, &f, &json, &err);
                break;
            case 6:
                rc = stw_audit_query_get(db, aud, qids[bench_rand(s) % nqids], &json, &err);
                break;
            case 7:
                rc = stw_audit_disclosures(db, aud, subject, STW_TIME_NONE, STW_TIME_NONE, &json,
                                           &err);
                break;
            case 8:
                rc = stw_audit_disclosures(db, aud, subject, since, since + 30 * day, &json, &err);
                break;
            case 9:
            case 10:
            case 11:
                rc = stw_usage(db, aud, groups[t - 9], STW_TIME_NONE, STW_TIME_NONE, &json, &err);
                break;
            default:
                rc = stw_usage(db, aud, groups[t - 12], since, since + 30 * day, &json, &err);
                break;
            }
            cs[t].lat[i] = (bench_now() - start) * 1000.0;
            if (rc != STW_OK)
                die(cs[t].name, &err);
            free(json);
        }
    }
    printf("\n| governance call (library, %d calls each)    | p50 ms  | p99 ms  | max ms  |\n"
           "|------------------------------------------|---------|---------|---------|\n",
           CALLS);
    for (int t = 0; t < NTYPES; t++)
        print_stats(&cs[t], all, &nall);
    double p99 = bench_pct(all, nall, 0.99);
    free(all);
    return p99;
}

/* ---- 4. query throughput --------------------------------------------------------------- */

struct qrun {
    size_t dim;
    stw_db *db;
    const stw_principal *who;
    size_t n;
    uint64_t seed;
    size_t failed;
    double receipt_ms; /* summed stw_answer.receipt_ms: the receipt's share of the call */
};

static void *qrun_main(void *arg)
{
    struct qrun *r = arg;
    stw_product_ref ref = {"notes", NULL, STW_TIME_NONE};
    float *v = malloc(r->dim * sizeof *v);

    for (size_t i = 0; i < r->n; i++) {
        stw_query q;
        stw_answer *a = NULL;
        stw_error err;

        rand_vec(v, r->dim, &r->seed);
        memset(&q, 0, sizeof q);
        q.vector = v;
        q.dim = r->dim;
        q.k = 10;
        q.purpose = STW_PURPOSE_TREAT;
        q.nproducts = 1;
        q.products = &ref;
        q.filter.created_from = q.filter.created_to = STW_TIME_NONE;
        q.include = STW_INC_ALL;
        if (stw_query_run(r->db, r->who, &q, &a, &err) != STW_OK || a->nresults != 10)
            r->failed++;
        else
            r->receipt_ms += a->receipt_ms;
        stw_answer_free(a);
    }
    free(v);
    return NULL;
}

/* queries per second over nthreads threads, n queries each; with sync_as (receipts on), the
 * clock stops only once a read of the trail as sync_as has seen every receipt indexed (the
 * receipt journal writes them into the trail behind the answers: src/journal.h) */
static double qps(stw_db *db, const stw_principal *who, const stw_principal *sync_as,
                  size_t dim, size_t nthreads, size_t n, uint64_t *s, double *receipt_us)
{
    pthread_t th[QTHREADS_MAX];
    struct qrun r[QTHREADS_MAX];
    double start = bench_now();

    for (size_t t = 0; t < nthreads; t++) {
        r[t] = (struct qrun){dim, db, who, n, bench_rand(s) | 1, 0, 0};
        pthread_create(&th[t], NULL, qrun_main, &r[t]);
    }
    for (size_t t = 0; t < nthreads; t++) {
        pthread_join(th[t], NULL);
        if (r[t].failed)
            die("query", NULL);
        if (receipt_us != NULL)
            *receipt_us = 1e3 * r[t].receipt_ms / (double)n / (double)nthreads;
    }
    if (sync_as != NULL) {
        char *head = NULL;
        stw_error err;
        if (stw_audit_head(db, sync_as, &head, &err) != STW_OK)
            die("audit head", &err);
        free(head);
    }
    return (double)(n * nthreads) / (bench_now() - start);
}

int main(int argc, char **argv)
{
    size_t nevents = 1000000, nq = 4000, nqids = 0, nchunks = 2000, dim = 64;
    const char *dir = NULL;
    char tmpl[] = "/tmp/stw-bench-audit-XXXXXX", key[STW_KEY_MAX], path[4200], dbfile[4300];
    char(*qids)[STW_QUERY_ID_MAX] = calloc(NQIDS, STW_QUERY_ID_MAX);
    uint64_t seed = 7;
    stw_error err;
    stw_db *db = NULL, *db_off = NULL;
    stw_principal admin, aud, who;
    stw_options opt;
    int keep = 0;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--events") == 0)
            nevents = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--queries") == 0)
            nq = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--chunks") == 0)
            nchunks = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--dim") == 0)
            dim = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--dir") == 0)
            dir = argv[i + 1], keep = 1;
    }
    if (nevents < 1000 || nq < 10 || nchunks < 10 || dim < 1 || dim > 4096 || qids == NULL) {
        fprintf(stderr, "usage: bench_audit [--events N>=1000] [--queries Q>=10] [--chunks N>=10]"
                        " [--dim D] [--dir DIR]\n");
        return 2;
    }
    if (dir == NULL)
        dir = mkdtemp(tmpl);
    if (dir == NULL) {
        perror("bench_audit: mkdtemp");
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0); /* progress lines as they come, also into a file */
    printf("# bench_audit: %zu history events, %zu queries per throughput round x %d rounds,"
           " product %zu chunks d=%zu k=10\n",
           nevents, nq, NROUNDS, nchunks, dim);
    bench_print_load();

    /* 1. store, product, principals */
    snprintf(path, sizeof path, "%s/store", dir);
    snprintf(dbfile, sizeof dbfile, "%s/steward.db", path);
    if (stw_init(path, key, &err) != STW_OK)
        die("init", &err);
    stw_options_default(&opt);
    if (stw_open(path, &opt, &db, &err) != STW_OK || stw_authenticate(db, key, &admin, &err))
        die("open", &err);
    {
        stw_product p;
        stw_version_info vi;
        stw_chunk *ch = calloc(nchunks, sizeof *ch);
        char(*ids)[24] = calloc(nchunks, 24), (*subj)[16] = calloc(nchunks, 16);
        float *x = malloc((size_t)nchunks * dim * sizeof *x);
        size_t acc, unch;

        if (ch == NULL || ids == NULL || subj == NULL || x == NULL)
            die("malloc", NULL);
        memset(&p, 0, sizeof p);
        snprintf(p.name, sizeof p.name, "notes");
        snprintf(p.domain, sizeof p.domain, "clinical");
        snprintf(p.contract.embedding_model, sizeof p.contract.embedding_model, "gauss");
        p.contract.dimension = dim;
        p.contract.metric = STW_METRIC_COSINE;
        if (stw_product_create(db, &admin, &p, &err) != STW_OK ||
            stw_version_create(db, &admin, "notes", "v1", &vi, &err) != STW_OK)
            die("product", &err);
        for (size_t i = 0; i < nchunks; i++) {
            snprintf(ids[i], 24, "c%05zu", i);
            snprintf(subj[i], 16, "patient-%05u", (unsigned)(i % 500));
            rand_vec(x + i * dim, dim, &seed);
            ch[i].id = ids[i];
            ch[i].text = "synthetic note";
            ch[i].vector = x + i * dim;
            ch[i].dim = dim;
            ch[i].confidentiality = STW_CONF_N;
            ch[i].subject = subj[i];
            ch[i].document_id = ids[i];
            ch[i].source_system = "ehr";
            ch[i].created_ms = STW_TIME_NONE;
        }
        for (size_t i = 0; i < nchunks; i += 5000)
            if (stw_chunks_add(db, &admin, "notes", "v1", ch + i,
                               nchunks - i < 5000 ? nchunks - i : 5000, &acc, &unch,
                               &err) != STW_OK)
                die("chunks", &err);
        if (stw_version_publish(db, &admin, "notes", "v1", &vi, &err) != STW_OK)
            die("publish", &err);
        free(ch);
        free(ids);
        free(subj);
        free(x);
    }
    {
        stw_principal pr;
        stw_grant g;
        char k2[STW_KEY_MAX];
        int64_t pv;

        memset(&pr, 0, sizeof pr);
        snprintf(pr.id, sizeof pr.id, "c00");
        pr.roles = STW_ROLE_CONSUMER;
        if (stw_principal_create(db, &admin, &pr, k2, &err) != STW_OK ||
            stw_authenticate(db, k2, &who, &err) != STW_OK)
            die("principal", &err);
        memset(&g, 0, sizeof g);
        snprintf(g.principal, sizeof g.principal, "c00");
        snprintf(g.product, sizeof g.product, "notes");
        g.purposes = 1u << STW_PURPOSE_TREAT;
        g.clearance = STW_CONF_V;
        if (stw_grant_create(db, &admin, &g, &pv, &err) != STW_OK)
            die("grant", &err);
        snprintf(pr.id, sizeof pr.id, "auditor");
        pr.roles = STW_ROLE_AUDITOR;
        if (stw_principal_create(db, &admin, &pr, k2, &err) != STW_OK ||
            stw_authenticate(db, k2, &aud, &err) != STW_OK)
            die("auditor", &err);
    }

    /* 2. history */
    /* dated after the setup's own events: the chain never lets an event's time go before its
     * predecessor's, so a history dated in the past year collapsed onto the setup's minute
     * (and every time window of step 3 held all or nothing) */
    int64_t t0 = util_now_ms() + 60000, now = t0 + YEAR_MS;
    double start = bench_now();
    seed_history(dbfile, nevents, t0, now - 60000, &seed, qids, &nqids);
    double t_seed = bench_now() - start;
    printf("history: %zu events appended through audit_record_query/audit_append (private"
           " headers, raw connection, 20,000 per transaction) in %.1f s (%.0f events/s)\n",
           nevents, t_seed, (double)nevents / t_seed);

    /* 3. governance */
    double gov_p99 = governance(db, &aud, t0, now, nevents, qids, nqids, &seed);

    /* 4. throughput, rounds alternating on/off */
    stw_options_default(&opt);
    opt.audit_receipts_off = 1;
    if (stw_open(path, &opt, &db_off, &err) != STW_OK)
        die("open (receipts off)", &err);
    double on1 = 0, off1 = 0, on2 = 0, off2 = 0, on8 = 0, off8 = 0;
    double rcpt1 = 0, rcpt_us = 0;
    qps(db, &who, &aud, dim, 1, nq / 4, &seed, NULL); /* warm the version and page caches */
    qps(db_off, &who, NULL, dim, 1, nq / 4, &seed, NULL);
    for (int r = 0; r < NROUNDS; r++) {
        on1 += qps(db, &who, &aud, dim, 1, nq, &seed, &rcpt_us) / NROUNDS;
        rcpt1 += rcpt_us / NROUNDS;
        off1 += qps(db_off, &who, NULL, dim, 1, nq, &seed, NULL) / NROUNDS;
        on2 += qps(db, &who, &aud, dim, 2, nq / 2, &seed, NULL) / NROUNDS;
        off2 += qps(db_off, &who, NULL, dim, 2, nq / 2, &seed, NULL) / NROUNDS;
        on8 += qps(db, &who, &aud, dim, QTHREADS_MAX, nq / QTHREADS_MAX, &seed, NULL) / NROUNDS;
        off8 += qps(db_off, &who, NULL, dim, QTHREADS_MAX, nq / QTHREADS_MAX, &seed, NULL) /
                NROUNDS;
    }
    {
        stw_receipt_stats rs;
        stw_receipt_stats_get(db, &rs);
        if (rs.journal)
            printf("receipt journal: %llu receipts appended (%.1f us each on the query thread, "
                   "one thread), %llu indexed in %llu batches, indexer busy %.2f s (%.1f us per "
                   "receipt)\n",
                   rs.appended, rcpt1, rs.indexed, rs.batches, rs.index_seconds,
                   rs.indexed ? 1e6 * rs.index_seconds / (double)rs.indexed : 0.0);
        else
            printf("receipt journal: off (receipts committed synchronously)\n");
    }
    double overhead1 = 1.0 - on1 / off1, overhead2 = 1.0 - on2 / off2,
           overhead8 = 1.0 - on8 / off8;
    printf("\n| query threads | receipts on (q/s) | receipts off (q/s) | audit overhead |\n"
           "|---------------|-------------------|--------------------|----------------|\n"
           "| 1             | %17.0f | %18.0f | %13.1f%% |\n"
           "| 2             | %17.0f | %18.0f | %13.1f%% |\n"
           "| %-13d | %17.0f | %18.0f | %13.1f%% |\n",
           on1, off1, 100 * overhead1, on2, off2, 100 * overhead2, QTHREADS_MAX, on8, off8,
           100 * overhead8);

    /* 5. verify */
    char *json = NULL;
    start = bench_now();
    if (stw_audit_verify(db, &aud, &json, &err) != STW_OK)
        die("verify", &err);
    double t_verify = bench_now() - start;
    size_t verified = 0;
    {
        const char *e = strstr(json, "\"events\":");
        if (strstr(json, "\"ok\":true") == NULL || e == NULL)
            die("verify: the chain does not verify", NULL);
        verified = strtoull(e + 9, NULL, 10);
    }
    printf("\nverify: %s in %.2f s\n", json, t_verify);
    free(json);

    stw_close(db_off);
    stw_close(db);
    if (!keep) {
        char cmd[4400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "bench_audit: could not remove %s\n", dir);
    }
    free(qids);
    bench_print_load();
    printf("bench: audit_overhead=%.3f governance_p99_ms=%.1f verify_events_per_s=%.0f\n",
           overhead1, gov_p99, (double)verified / t_verify);
    return 0;
}
