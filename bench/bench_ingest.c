/* bench_ingest.c - bulk ingest and publish throughput for one d=384 product version.
 *
 * Data: N generated chunks (default 200,000): a Gaussian-mixture unit vector (bench_common.h),
 * about 200 bytes of text, labels (confidentiality, one compartment on a tenth of them), five
 * provenance fields and one metadata field; the contract is cosine with required provenance,
 * so every chunk passes the full ingest validation.
 *
 *   (a) library  stw_chunks_add in batches of --batch (default 1000) through include/steward.h.
 *                The chunks are built as stw_chunk structs before the clock starts, so JSON
 *                parsing of a request body is NOT included; what is timed is validation,
 *                canonical forms, chunk hashes, the SQLite inserts and each batch's audit
 *                event and commit.
 *   (b) publish  stw_version_publish of that version with the default options (an HNSW graph
 *                is built: N >= hnsw_min_rows), including contract checks, content hash,
 *                vectors file, graph build, manifest, fsyncs and the state flip; then the same
 *                chunks again as a second version published without a graph (hnsw_min_rows
 *                0), to show what publish costs besides FAISS.
 *   (c) CLI      with --cli STEWARD (path of the steward binary): `steward ingest` of the
 *                first --cli-n chunks (default 50,000) from a JSONL file without vectors plus a
 *                little-endian float32 file (--vectors), wall clock of the whole process, so
 *                JSON parsing IS included here.
 *
 * Prints the figures, the machine load, and one final line exactly
 * `bench: ingest_chunks_per_s=N publish_s_per_100k=M` (N from (a), M from (b)).
 * Usage: bench_ingest [--n N] [--d D] [--batch B] [--dir DIR] [--cli STEWARD] [--cli-n N]
 *                     [--no-publish] */
#define _XOPEN_SOURCE 700 /* nftw, mkdtemp */
#include <errno.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_common.h"
#include "steward.h"

#define NCENTRES 1000
#define TEXT_MAX 256
#define PROV_MAX 320

static void die(const char *what, const stw_error *err)
{
    fprintf(stderr, "bench_ingest: %s: %s: %s\n", what, err->name, err->message);
    exit(1);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* user + system CPU seconds of this process (all threads) */
static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

static const char *const sections[] = {"assessment", "plan", "history", "medications"};
static const char *const systems[] = {"ehr", "lis", "pacs"};

/* The i-th chunk's strings (deterministic in i). */
static void chunk_strings(size_t i, char *id, size_t idcap, char *text, char *prov, char *meta)
{
    snprintf(id, idcap, "note-%07zu#%zu", i / 4, i % 4);
    snprintf(text, TEXT_MAX,
             "Assessment %zu: patient reports intermittent chest pain on exertion, relieved by "
             "rest; ECG shows no acute changes; troponin pending. Plan: stress test, statin, "
             "follow up in two weeks (note %zu).",
             i, i / 4);
    snprintf(prov, PROV_MAX,
             "{\"source_system\":\"%s\",\"record_id\":\"enc-%zu\",\"document_id\":\"note-%zu\","
             "\"section\":\"%s\",\"subject\":\"patient-%04zu\","
             "\"created_at\":\"2026-10-%02zuT14:05:00Z\"}",
             systems[i % 3], i / 16, i / 4, sections[i % 4], (i * 7919) % 5000, 1 + i % 28);
    snprintf(meta, 64, "{\"author_role\":\"%s\"}", i % 2 ? "physician" : "nurse");
}

int main(int argc, char **argv)
{
    size_t n = 200000, d = 384, batch = 1000, cli_n = 50000;
    const char *dir = NULL, *cli = NULL;
    int do_publish = 1, made_dir = 0;
    char tmpl[] = "/tmp/bench-ingest-XXXXXX", path[4096], key[STW_KEY_MAX];
    stw_error err;
    stw_db *db = NULL;
    stw_principal admin;
    stw_options opt;
    stw_version_info vi;
    uint64_t seed = 0x5eed1234abcdULL;
    float *centres, *vecs;
    stw_chunk *chunks;
    char (*ids)[32], (*texts)[TEXT_MAX], (*provs)[PROV_MAX], (*metas)[64];
    char (*docs)[32] = NULL, (*recs)[32] = NULL, (*subs)[32] = NULL;
    static const char *const comp_psy[] = {"PSY"};
    double t_add = 0, t_pub = 0, graph_s = -1, cli_rate = -1, cpu_add = 0, cpu_pub = 0,
           t_pub_flat = -1;
    size_t accepted = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--no-publish") == 0) {
            do_publish = 0;
            continue;
        }
        if (v == NULL) {
            fprintf(stderr, "bench_ingest: %s needs a value\n", a);
            return 2;
        }
        if (strcmp(a, "--n") == 0)
            n = strtoull(v, NULL, 10);
        else if (strcmp(a, "--d") == 0)
            d = strtoull(v, NULL, 10);
        else if (strcmp(a, "--batch") == 0)
            batch = strtoull(v, NULL, 10);
        else if (strcmp(a, "--dir") == 0)
            dir = v;
        else if (strcmp(a, "--cli") == 0)
            cli = v;
        else if (strcmp(a, "--cli-n") == 0)
            cli_n = strtoull(v, NULL, 10);
        else {
            fprintf(stderr, "bench_ingest: unknown argument '%s'\n", a);
            return 2;
        }
        i++;
    }
    if (n == 0 || d == 0 || batch == 0 || batch > 10000) {
        fputs("bench_ingest: --n and --d must be positive, --batch in 1..10000\n", stderr);
        return 2;
    }
    if (cli_n > n)
        cli_n = n;
    if (dir == NULL) {
        dir = mkdtemp(tmpl);
        made_dir = 1;
    } else if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        perror("bench_ingest: --dir");
        return 1;
    }
    if (dir == NULL) {
        perror("mkdtemp");
        return 1;
    }

    /* data, generated before any clock starts */
    centres = malloc(NCENTRES * d * sizeof *centres);
    vecs = malloc(n * d * sizeof *vecs);
    chunks = calloc(n, sizeof *chunks);
    ids = malloc(n * sizeof *ids);
    texts = malloc(n * sizeof *texts);
    provs = malloc(n * sizeof *provs);
    metas = malloc(n * sizeof *metas);
    if (centres == NULL || vecs == NULL || chunks == NULL || ids == NULL || texts == NULL ||
        provs == NULL || metas == NULL) {
        fputs("bench_ingest: out of memory\n", stderr);
        return 1;
    }
    bench_centres(centres, NCENTRES, d, &seed);
    bench_mixture(vecs, n, d, centres, NCENTRES, &seed);
    for (size_t i = 0; i < n; i++) {
        stw_chunk *c = &chunks[i];
        chunk_strings(i, ids[i], sizeof ids[i], texts[i], provs[i], metas[i]);
        c->id = ids[i];
        c->text = texts[i];
        c->vector = vecs + i * d;
        c->dim = d;
        c->confidentiality = i % 10 == 0 ? STW_CONF_R : STW_CONF_N;
        c->ncompartments = i % 10 == 0 ? 1 : 0;
        c->compartments = c->ncompartments ? comp_psy : NULL;
        c->source_system = systems[i % 3];
        c->document_id = NULL; /* the parsed fields are filled as the HTTP parser would: */
        c->section = sections[i % 4];
        c->created_ms = 1792936800000LL + (int64_t)(i % 28) * 86400000LL;
        c->provenance_json = provs[i];
        c->metadata_json = metas[i];
    }
    /* document_id / record_id / subject: the values inside the provenance strings */
    {
        docs = malloc(n * sizeof *docs);
        recs = malloc(n * sizeof *recs);
        subs = malloc(n * sizeof *subs);
        if (docs == NULL || recs == NULL || subs == NULL)
            return 1;
        for (size_t i = 0; i < n; i++) {
            snprintf(docs[i], sizeof docs[i], "note-%zu", i / 4);
            snprintf(recs[i], sizeof recs[i], "enc-%zu", i / 16);
            snprintf(subs[i], sizeof subs[i], "patient-%04zu", (i * 7919) % 5000);
            chunks[i].document_id = docs[i];
            chunks[i].record_id = recs[i];
            chunks[i].subject = subs[i];
        }
    }

    /* store, product, draft */
    snprintf(path, sizeof path, "%s/lib", dir);
    if (stw_init(path, key, &err) != STW_OK)
        die("init", &err);
    stw_options_default(&opt);
    if (stw_open(path, &opt, &db, &err) != STW_OK || stw_authenticate(db, key, &admin, &err))
        die("open", &err);
    {
        stw_product p;
        memset(&p, 0, sizeof p);
        snprintf(p.name, sizeof p.name, "notes");
        snprintf(p.domain, sizeof p.domain, "clinical");
        snprintf(p.owner, sizeof p.owner, "admin");
        snprintf(p.contract.embedding_model, sizeof p.contract.embedding_model, "mixture-%zu", d);
        p.contract.dimension = d;
        p.contract.metric = STW_METRIC_COSINE;
        p.contract.ncompartments = 3;
        snprintf(p.contract.compartments[0], STW_LABEL_MAX + 1, "PSY");
        snprintf(p.contract.compartments[1], STW_LABEL_MAX + 1, "HIV");
        snprintf(p.contract.compartments[2], STW_LABEL_MAX + 1, "SUD");
        p.contract.nprovenance_required = 2;
        snprintf(p.contract.provenance_required[0], STW_LABEL_MAX + 1, "source_system");
        snprintf(p.contract.provenance_required[1], STW_LABEL_MAX + 1, "document_id");
        if (stw_product_create(db, &admin, &p, &err) != STW_OK)
            die("product", &err);
        if (stw_version_create(db, &admin, "notes", "v1", &vi, &err) != STW_OK)
            die("version", &err);
    }

    /* (a) library ingest */
    for (size_t off = 0; off < n; off += batch) {
        size_t m = n - off < batch ? n - off : batch, acc = 0, unch = 0;
        double t0 = bench_now(), c0 = cpu_seconds();
        if (stw_chunks_add(db, &admin, "notes", "v1", chunks + off, m, &acc, &unch, &err) !=
            STW_OK)
            die("chunks_add", &err);
        t_add += bench_now() - t0;
        cpu_add += cpu_seconds() - c0;
        accepted += acc;
    }
    if (accepted != n) {
        fprintf(stderr, "bench_ingest: accepted %zu of %zu chunks\n", accepted, n);
        return 1;
    }
    /* re-sending one batch must be all "unchanged" (the idempotence the CLI relies on) */
    {
        size_t acc = 0, unch = 0, m = n < batch ? n : batch;
        double t0 = bench_now();
        if (stw_chunks_add(db, &admin, "notes", "v1", chunks, m, &acc, &unch, &err) != STW_OK)
            die("re-send", &err);
        printf("re-send of one batch: accepted=%zu unchanged=%zu in %.3f s\n", acc, unch,
               bench_now() - t0);
    }

    /* (b) publish */
    if (do_publish) {
        char man[4200], *text = NULL;
        FILE *f;
        double t0 = bench_now(), c0 = cpu_seconds();
        if (stw_version_publish(db, &admin, "notes", "v1", &vi, &err) != STW_OK)
            die("publish", &err);
        t_pub = bench_now() - t0;
        cpu_pub = cpu_seconds() - c0;
        snprintf(man, sizeof man, "%s/versions/notes/v1/manifest.json", path);
        f = fopen(man, "r");
        if (f != NULL) {
            text = calloc(1, 1 << 16);
            if (text != NULL && fread(text, 1, (1 << 16) - 1, f) > 0) {
                const char *b = strstr(text, "\"build_seconds\":");
                if (b != NULL)
                    graph_s = strtod(b + strlen("\"build_seconds\":"), NULL);
            }
            free(text);
            fclose(f);
        }
    }
    stw_close(db);

    /* (b') the same publish without a graph: a second version of the same chunks in a store
     * opened with hnsw_min_rows = 0 (what publish costs besides FAISS) */
    if (do_publish) {
        double t0;
        opt.hnsw_min_rows = 0;
        if (stw_open(path, &opt, &db, &err) != STW_OK ||
            stw_version_create(db, &admin, "notes", "v2", &vi, &err) != STW_OK)
            die("v2", &err);
        for (size_t off = 0; off < n; off += batch) {
            size_t m = n - off < batch ? n - off : batch, acc = 0, unch = 0;
            if (stw_chunks_add(db, &admin, "notes", "v2", chunks + off, m, &acc, &unch, &err) !=
                STW_OK)
                die("chunks_add v2", &err);
        }
        t0 = bench_now();
        if (stw_version_publish(db, &admin, "notes", "v2", &vi, &err) != STW_OK)
            die("publish v2", &err);
        t_pub_flat = bench_now() - t0;
        stw_close(db);
        stw_options_default(&opt);
    }

    /* (c) the CLI on a JSONL file + float32 vectors */
    if (cli != NULL && cli_n > 0) {
        char jsonl[4200], f32[4200], store[4200], cmd[16384];
        FILE *jf, *vf;
        int status;
        double t0;
        snprintf(store, sizeof store, "%s/cli", dir);
        snprintf(jsonl, sizeof jsonl, "%s/chunks.jsonl", dir);
        snprintf(f32, sizeof f32, "%s/chunks.f32", dir);
        jf = fopen(jsonl, "w");
        vf = fopen(f32, "wb");
        if (jf == NULL || vf == NULL) {
            perror("bench_ingest: write input files");
            return 1;
        }
        for (size_t i = 0; i < cli_n; i++) {
            fprintf(jf,
                    "{\"id\":\"%s\",\"text\":\"%s\",\"labels\":{\"confidentiality\":\"%s\","
                    "\"compartments\":[%s]},\"provenance\":%s,\"metadata\":%s}\n",
                    ids[i], texts[i], i % 10 == 0 ? "R" : "N", i % 10 == 0 ? "\"PSY\"" : "",
                    provs[i], metas[i]);
            fwrite(vecs + i * d, sizeof(float), d, vf);
        }
        fclose(jf);
        fclose(vf);
        /* a fresh store with the same product, made through the CLI's own store */
        if (stw_init(store, key, &err) != STW_OK)
            die("init cli store", &err);
        if (stw_open(store, &opt, &db, &err) != STW_OK ||
            stw_authenticate(db, key, &admin, &err))
            die("open cli store", &err);
        {
            stw_product *src = NULL;
            stw_db *lib = NULL;
            if (stw_open(path, &opt, &lib, &err) != STW_OK ||
                stw_product_get(lib, &admin, "notes", &src, &err) != STW_OK)
                die("product copy", &err);
            if (stw_product_create(db, &admin, src, &err) != STW_OK)
                die("product (cli)", &err);
            stw_products_free(src, 1);
            stw_close(lib);
        }
        stw_close(db);
        snprintf(cmd, sizeof cmd,
                 "'%s' ingest --data '%s' --product notes --version v1 --vectors '%s' '%s'"
                 " > '%s/cli.out' 2> '%s/cli.err'",
                 cli, store, f32, jsonl, dir, dir);
        t0 = bench_now();
        status = system(cmd);
        if (status != 0) {
            fprintf(stderr, "bench_ingest: `steward ingest` failed (status %d); see %s/cli.err\n",
                    status, dir);
            return 1;
        }
        cli_rate = (double)cli_n / (bench_now() - t0);
    }

    printf("bench_ingest: n=%zu d=%zu batch=%zu metric=cosine (validation + canonical forms +"
           " hashes + SQLite + audit per batch)\n",
           n, d, batch);
    printf("library ingest (stw_chunks_add, JSON parsing excluded): %.1f s wall, %.0f chunks/s"
           " (%.1f CPU s: %.0f chunks per CPU second)\n",
           t_add, (double)n / t_add, cpu_add, (double)n / cpu_add);
    if (cli_rate >= 0)
        printf("CLI ingest (`steward ingest`, JSONL + --vectors f32, JSON parsing included, %zu"
               " chunks): %.0f chunks/s\n",
               cli_n, cli_rate);
    if (do_publish)
        printf("publish: %.1f s wall for %zu chunks (%.2f s per 100k; HNSW graph build %.1f s of"
               " it; %.1f CPU s over all threads)\n",
               t_pub, n, t_pub * 100000.0 / (double)n, graph_s, cpu_pub);
    if (t_pub_flat >= 0)
        printf("publish without a graph (hnsw_min_rows=0, same chunks): %.1f s wall (%.2f s per"
               " 100k)\n",
               t_pub_flat, t_pub_flat * 100000.0 / (double)n);
    bench_print_load();
    printf("bench: ingest_chunks_per_s=%.0f publish_s_per_100k=%.2f\n", (double)n / t_add,
           do_publish ? t_pub * 100000.0 / (double)n : -1.0);

    if (made_dir && getenv("STW_KEEP_DATA") == NULL)
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(centres);
    free(vecs);
    free(chunks);
    free(ids);
    free(texts);
    free(provs);
    free(metas);
    free(docs);
    free(recs);
    free(subs);
    return 0;
}
