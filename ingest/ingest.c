/* ingest.c - `steward ingest --data DIR --product P --version V FILE.jsonl [--publish]
 *            [--vectors FILE.f32] [--batch N] [--key KEY]`
 *
 * Progress goes to stderr (a bar on a terminal, one plain line per 10 batches otherwise);
 * the one JSON summary line goes to stdout. Without --key (or STEWARD_API_KEY) the command
 * acts as the local operator (admin): whoever can write the data folder controls the store
 * anyway, and every batch is still recorded in the audit trail under "local-operator". */
#include <cJSON.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ingest.h"
#include "json.h"
#include "limits.h"
#include "steward.h"

#define DEFAULT_BATCH 1000u

struct ingest_opts {
    const char *data, *product, *version, *file, *vectors, *key;
    size_t batch;
    int publish;
};

static int usage(void)
{
    fputs("usage: steward ingest --data DIR --product P --version V FILE.jsonl [--publish]\n"
          "                      [--vectors FILE.f32] [--batch N] [--key API_KEY]\n",
          stderr);
    return 2;
}

static int parse_args(int argc, char **argv, struct ingest_opts *o)
{
    memset(o, 0, sizeof *o);
    o->batch = DEFAULT_BATCH;
    o->key = getenv("STEWARD_API_KEY");
    o->data = getenv("STEWARD_DATA");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **dst = NULL;
        if (strcmp(a, "--publish") == 0) {
            o->publish = 1;
            continue;
        }
        if (strcmp(a, "--data") == 0)
            dst = &o->data;
        else if (strcmp(a, "--product") == 0)
            dst = &o->product;
        else if (strcmp(a, "--version") == 0)
            dst = &o->version;
        else if (strcmp(a, "--vectors") == 0)
            dst = &o->vectors;
        else if (strcmp(a, "--key") == 0)
            dst = &o->key;
        else if (strcmp(a, "--batch") == 0) {
            char *end;
            if (i + 1 >= argc)
                return -1;
            errno = 0;
            unsigned long long b = strtoull(argv[++i], &end, 10);
            if (errno || *end || b < 1 || b > STW_DEFAULT_MAX_BATCH) {
                fprintf(stderr, "steward ingest: --batch must be 1..%u\n",
                        STW_DEFAULT_MAX_BATCH);
                return -1;
            }
            o->batch = (size_t)b;
            continue;
        } else if (a[0] == '-' && a[1] != '\0') { /* a lone "-" is standard input */
            fprintf(stderr, "steward ingest: unknown option '%s'\n", a);
            return -1;
        } else if (o->file == NULL) {
            o->file = a;
            continue;
        } else {
            fprintf(stderr, "steward ingest: more than one input file\n");
            return -1;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "steward ingest: %s needs a value\n", a);
            return -1;
        }
        *dst = argv[++i];
    }
    if (o->data == NULL || o->product == NULL || o->version == NULL || o->file == NULL)
        return -1;
    return 0;
}

static void progress(int tty, size_t lines, long done_bytes, long total_bytes, size_t batches)
{
    if (tty && total_bytes > 0) {
        int width = 40, fill = (int)((double)done_bytes / (double)total_bytes * width);
        fprintf(stderr, "\r[%.*s%*s] %3d%% %zu chunks", fill,
                "########################################", width - fill, "",
                (int)(100.0 * (double)done_bytes / (double)total_bytes), lines);
        fflush(stderr);
    } else if (!tty && batches % 10 == 0) {
        fprintf(stderr, "ingest: %zu chunks read (%ld of %ld bytes)\n", lines, done_bytes,
                total_bytes);
    }
}

static void print_error(const char *what, const stw_error *err)
{
    fprintf(stderr, "steward ingest: %s: %s: %s\n", what, err->name, err->message);
}

/* One batch of parsed lines: the cJSON trees and holds stay alive until the batch is sent. */
struct batch {
    size_t n;
    cJSON **trees;
    stw_chunk *chunks;
    struct json_chunk_hold *holds;
};

static void batch_clear(struct batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        json_chunk_hold_release(&b->holds[i]);
        cJSON_Delete(b->trees[i]);
    }
    b->n = 0;
}

int ingest_main(int argc, char **argv)
{
    struct ingest_opts o;
    stw_options opt;
    stw_error err;
    stw_db *db = NULL;
    stw_principal who;
    stw_product *prod = NULL;
    stw_version_info vi;
    struct batch b = {0, NULL, NULL, NULL};
    FILE *in = NULL, *vf = NULL;
    char *line = NULL;
    size_t cap = 0, lineno = 0, accepted = 0, unchanged = 0, batches = 0;
    float *vrow = NULL;
    long total = 0;
    int tty = isatty(STDERR_FILENO), status = 1;
    ssize_t len;

    if (parse_args(argc, argv, &o) != 0)
        return usage();
    stw_options_default(&opt);
    { /* publish builds graphs by the same rule as `steward serve` (docs/config.md) */
        const char *v = getenv("STEWARD_HNSW_MIN_ROWS");
        char *end = NULL;
        if (v != NULL && v[0] != '\0') {
            unsigned long long rows = strtoull(v, &end, 10);
            if (end == NULL || *end != '\0') {
                fputs("steward ingest: STEWARD_HNSW_MIN_ROWS must be a row count\n", stderr);
                return 2;
            }
            opt.hnsw_min_rows = (size_t)rows;
        }
    }
    if (stw_open(o.data, &opt, &db, &err) != STW_OK) {
        print_error("open", &err);
        return 1;
    }
    memset(&who, 0, sizeof who);
    if (o.key != NULL) {
        if (stw_authenticate(db, o.key, &who, &err) != STW_OK) {
            print_error("authenticate", &err);
            goto done;
        }
    } else {
        snprintf(who.id, sizeof who.id, "local-operator");
        who.roles = STW_ROLE_ADMIN;
    }
    if (stw_product_get(db, &who, o.product, &prod, &err) != STW_OK) {
        print_error("product", &err);
        goto done;
    }
    if (stw_version_get(db, &who, o.product, o.version, &vi, &err) == STW_NOT_FOUND &&
        stw_version_create(db, &who, o.product, o.version, &vi, &err) != STW_OK) {
        print_error("create version", &err);
        goto done;
    }
    in = strcmp(o.file, "-") == 0 ? stdin : fopen(o.file, "r");
    if (in == NULL) {
        fprintf(stderr, "steward ingest: cannot open %s: %s\n", o.file, strerror(errno));
        goto done;
    }
    if (in != stdin && fseek(in, 0, SEEK_END) == 0) {
        total = ftell(in);
        rewind(in);
    }
    if (o.vectors != NULL) {
        vf = fopen(o.vectors, "rb");
        /* one row per line of the batch, alive until the batch is sent */
        vrow = prod->contract.dimension <= SIZE_MAX / sizeof *vrow / o.batch
                   ? malloc(o.batch * prod->contract.dimension * sizeof *vrow)
                   : NULL;
        if (vf == NULL || vrow == NULL) {
            fprintf(stderr, "steward ingest: cannot open %s: %s\n", o.vectors, strerror(errno));
            goto done;
        }
    }
    b.trees = calloc(o.batch, sizeof *b.trees);
    b.chunks = calloc(o.batch, sizeof *b.chunks);
    b.holds = calloc(o.batch, sizeof *b.holds);
    if (b.trees == NULL || b.chunks == NULL || b.holds == NULL)
        goto done;

    for (;;) {
        int eof;
        len = getline(&line, &cap, in);
        eof = len < 0;
        if (!eof) {
            char where[48];
            cJSON *tree;
            lineno++;
            while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
                line[--len] = '\0';
            if (len == 0)
                continue; /* blank lines are allowed */
            snprintf(where, sizeof where, "line %zu", lineno);
            if (json_parse_body(line, (size_t)len, &tree, &err) != STW_OK) {
                fprintf(stderr, "steward ingest: %s: %s: %s\n", where, err.name, err.message);
                goto done;
            }
            if (vf != NULL) {
                /* The row goes straight into the batch's vector buffer: a one-number
                 * placeholder keeps the JSON parser's "vector is required" rule satisfied, and
                 * the chunk is pointed at the row after parsing. (Building a 384-node cJSON
                 * array per line only to parse it back spent most of the CLI's time in
                 * malloc.) Finiteness and dimension are still checked by stw_chunks_add. */
                size_t d = prod->contract.dimension;
                if (fread(vrow + b.n * d, sizeof(float), d, vf) != d) {
                    fprintf(stderr, "steward ingest: %s: %s has no vector for this line\n", where,
                            o.vectors);
                    cJSON_Delete(tree);
                    goto done;
                }
                cJSON_DeleteItemFromObjectCaseSensitive(tree, "vector");
                cJSON_AddItemToObject(tree, "vector", cJSON_CreateIntArray((const int[]){0}, 1));
            }
            b.trees[b.n] = tree;
            if (json_parse_chunk(tree, where, &b.chunks[b.n], &b.holds[b.n], &err) != STW_OK) {
                fprintf(stderr, "steward ingest: %s: %s\n", err.name, err.message);
                cJSON_Delete(tree);
                goto done;
            }
            if (vf != NULL) {
                b.chunks[b.n].vector = vrow + b.n * prod->contract.dimension;
                b.chunks[b.n].dim = prod->contract.dimension;
            }
            b.n++;
        }
        if (b.n == o.batch || (eof && b.n > 0)) {
            size_t acc = 0, unch = 0;
            if (stw_chunks_add(db, &who, o.product, o.version, b.chunks, b.n, &acc, &unch,
                               &err) != STW_OK) {
                fprintf(stderr, "\nsteward ingest: batch ending at line %zu: %s: %s\n", lineno,
                        err.name, err.message);
                goto done;
            }
            accepted += acc;
            unchanged += unch;
            batches++;
            batch_clear(&b);
            progress(tty, accepted + unchanged, in == stdin ? 0 : ftell(in), total, batches);
        }
        if (eof)
            break;
    }
    if (tty)
        fputc('\n', stderr);
    if (o.publish && stw_version_publish(db, &who, o.product, o.version, &vi, &err) != STW_OK) {
        print_error("publish", &err);
        goto done;
    }
    if (stw_version_get(db, &who, o.product, o.version, &vi, &err) != STW_OK) {
        print_error("version", &err);
        goto done;
    }
    {
        cJSON *sum = cJSON_CreateObject();
        char *s;
        cJSON_AddNumberToObject(sum, "accepted", (double)accepted);
        cJSON_AddNumberToObject(sum, "unchanged", (double)unchanged);
        cJSON_AddStringToObject(sum, "state", stw_state_name(vi.state));
        cJSON_AddStringToObject(sum, "product", o.product);
        cJSON_AddStringToObject(sum, "version", o.version);
        cJSON_AddNumberToObject(sum, "lines", (double)lineno);
        if (vi.state != STW_DRAFT) {
            cJSON_AddNumberToObject(sum, "chunks", (double)vi.chunks);
            cJSON_AddStringToObject(sum, "content_hash", vi.content_hash);
        }
        s = cJSON_PrintUnformatted(sum);
        if (s != NULL)
            printf("%s\n", s);
        cJSON_free(s);
        cJSON_Delete(sum);
    }
    status = 0;
done:
    batch_clear(&b);
    free(b.trees);
    free(b.chunks);
    free(b.holds);
    free(line);
    free(vrow);
    if (in != NULL && in != stdin)
        fclose(in);
    if (vf != NULL)
        fclose(vf);
    stw_products_free(prod, 1);
    stw_close(db);
    return status;
}
