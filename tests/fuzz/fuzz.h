/* fuzz.h - shared by the libFuzzer targets in tests/fuzz/ (see scripts/fuzz.sh).
 *
 * Each target defines LLVMFuzzerTestOneInput and drives one parser of src/json.c the way the
 * server (http.c) or the bulk loader (ingest/ingest.c) does. Besides the sanitizers, each
 * target checks the parsers' contract from json.h and aborts when it breaks, so libFuzzer
 * reports it like a crash:
 *  - a failure fills *err with a code other than STW_OK, a snake_case name and a message, and
 *    json_render_error can render it;
 *  - a failing parser leaves its outputs zeroed (it frees what it built);
 *  - a success returns what the input holds (strings non-empty, vectors finite).
 * The same sources build without libFuzzer into replay programs (replay.c) that CTest runs
 * over tests/fuzz/corpus/ as regression tests.
 */
#ifndef STW_FUZZ_H
#define STW_FUZZ_H

#include <float.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(cond)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: fuzz contract broken: %s\n", __FILE__, __LINE__, #cond);       \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* A NUL-terminated copy of the input, as http.c and ingest.c hand bodies to json.c.
 * Owned: free(). Aborts when out of memory (not a finding). */
static inline char *fuzz_text(const uint8_t *data, size_t size)
{
    char *t = malloc(size + 1);

    FUZZ_ASSERT(t != NULL);
    if (size > 0)
        memcpy(t, data, size);
    t[size] = '\0';
    return t;
}

/* 1 if the n bytes at p are all zero. */
static inline int fuzz_zeroed(const void *p, size_t n)
{
    const unsigned char *b = p;
    size_t i;

    for (i = 0; i < n; i++) {
        if (b[i] != 0)
            return 0;
    }
    return 1;
}

/* The error contract: a code, a snake_case name, a message, renderable. */
static inline void fuzz_check_error(stw_code rc, const stw_error *err)
{
    const char *name = err->name;
    cJSON *j;
    size_t i;

    FUZZ_ASSERT(rc != STW_OK);
    FUZZ_ASSERT(err->code == rc);
    FUZZ_ASSERT(name[0] >= 'a' && name[0] <= 'z');
    for (i = 0; name[i] != '\0'; i++)
        FUZZ_ASSERT((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
                    name[i] == '_');
    FUZZ_ASSERT(err->message[0] != '\0');
    j = json_render_error(err);
    FUZZ_ASSERT(j != NULL);
    cJSON_Delete(j);
}

/* 1 if "u0000" follows an odd run of backslashes somewhere in text: the escape \u0000, which
 * json_parse_body must refuse (a C string would end there). Counted backwards from each
 * "u0000", independently of how json.c scans forwards. */
static inline int fuzz_escaped_nul(const char *text, size_t len)
{
    size_t p, b;

    for (p = 1; p + 5 <= len; p++) {
        if (memcmp(text + p, "u0000", 5) != 0)
            continue;
        for (b = 0; b < p && text[p - 1 - b] == '\\'; b++) {
        }
        if (b % 2 == 1)
            return 1;
    }
    return 0;
}

/* The body contract shared by every target: an accepted body is an object without NULs. */
static inline void fuzz_check_body(stw_code rc, const char *text, size_t len, const cJSON *body,
                                   const stw_error *err)
{
    if (rc != STW_OK) {
        fuzz_check_error(rc, err);
        FUZZ_ASSERT(body == NULL);
        return;
    }
    FUZZ_ASSERT(cJSON_IsObject(body));
    FUZZ_ASSERT(memchr(text, '\0', len) == NULL);
    FUZZ_ASSERT(!fuzz_escaped_nul(text, len));
}

/* A parsed vector must be non-empty and finite. */
static inline void fuzz_check_vector(const float *v, size_t dim)
{
    size_t i;

    FUZZ_ASSERT(v != NULL && dim > 0);
    for (i = 0; i < dim; i++)
        FUZZ_ASSERT(v[i] >= -FLT_MAX && v[i] <= FLT_MAX); /* also false for NaN */
}

/* A borrowed string the parser accepted: present and non-empty when required. */
static inline void fuzz_check_string(const char *s, int required, size_t maxlen)
{
    if (s == NULL) {
        FUZZ_ASSERT(!required);
        return;
    }
    FUZZ_ASSERT(s[0] != '\0' && strlen(s) <= maxlen);
}

#endif
