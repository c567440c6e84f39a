/* util.h - small helpers shared by the core modules: hashing, random ids, canonical JSON,
 * the wall clock. Thread: all functions are safe from any thread. */
#ifndef STW_UTIL_H
#define STW_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "steward.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SHA256_LEN 32

/* Current wall-clock time in Unix milliseconds. */
int64_t util_now_ms(void);

/* out = SHA-256(data). */
void util_sha256(const void *data, size_t len, unsigned char out[SHA256_LEN]);
/* "sha256:" + lowercase hex of a raw digest into out (STW_HASH_STR_MAX bytes). */
void util_hash_str(const unsigned char digest[SHA256_LEN], char out[STW_HASH_STR_MAX]);
/* Lowercase hex of n bytes into out (2n+1 bytes). */
void util_hex(const unsigned char *bytes, size_t n, char *out);

/* `prefix` + 2*nbytes hex chars from the CSPRNG into out (size cap). 0 on success. */
int util_random_id(const char *prefix, size_t nbytes, char *out, size_t cap);
/* Like util_random_id with 16 bytes, but the first 6 are the time in milliseconds (big-endian),
 * so ids made one after another sort together: B-tree inserts keyed by them append instead of
 * touching a random page. 80 random bits remain. */
int util_time_id(const char *prefix, char *out, size_t cap);

/* Canonical JSON: objects with keys sorted bytewise, no whitespace, cJSON number format.
 * Owned: free(). NULL on parse failure or out of memory. `json` may be NULL: gives "{}". */
char *util_canonical_json(const char *json);

/* strdup that accepts NULL. Owned: free(). */
char *util_strdup(const char *s);

/* 1 if s is valid UTF-8 without control characters other than tab/newline/CR. */
int util_valid_text(const char *s, size_t len);

/* A growing text buffer, NUL-terminated once non-empty; a failed append sets oom and makes
 * every later append a no-op (the caller checks oom once, at the end). Start it zeroed;
 * owned p: free(). */
struct util_buf {
    char *p;
    size_t len, cap;
    int oom;
};
void util_buf_add(struct util_buf *b, const char *s, size_t n);
void util_buf_str(struct util_buf *b, const char *s);
/* JSON text exactly as cJSON_PrintUnformatted writes the same value, without building a tree:
 * a string (its escapes \" \\ \b \f \n \r \t, other bytes below 32 as \u00xx, the rest as
 * is; NULL gives null), and a number (an int-sized integer with %d, else %1.15g if that reads
 * back within DBL_EPSILON, else %1.17g; NaN and infinities as null). Numbers assume the C
 * locale, as cJSON's own check does not. */
void util_buf_json_string(struct util_buf *b, const char *s);
void util_buf_json_number(struct util_buf *b, double d);

/* len bytes of fd at offset off into buf, through short reads and EINTR: 0, or -1 with errno
 * set (0 when the file ended first). */
int util_pread_all(int fd, void *buf, size_t len, uint64_t off);

/* Large read-mostly arrays (a version's vectors, records, graph blocks, rows) on 2 MB pages
 * where the kernel has them (transparent huge pages, madvise mode). On this project's VMs a
 * query's first touch of a 4 KB page costs 2-6 us and a random read of a mapped one ~0.3 us,
 * against 0.5 and 0.02-0.06 us on 2 MB pages (docs/search.md, session 10): a query reads
 * ~40 scattered rows. Without huge pages (another kernel, THP off) they are ordinary pages. */
/* bytes of zeroed memory on 2 MB pages where possible; NULL if out of memory.
 * Owned: util_huge_free() with the same bytes. */
void *util_huge_alloc(size_t bytes);
void util_huge_free(void *p, size_t bytes);
/* Moves [p, p + bytes), already filled (memory another library allocated), to 2 MB pages
 * where the kernel can (MADV_COLLAPSE, Linux 6.1; else a hint for khugepaged); only the
 * whole 2 MB pages inside the range. Contents unchanged; failures are ignored. */
void util_huge_advise(const void *p, size_t bytes);

#ifdef __cplusplus
}
#endif

#endif
