/* util.h - small helpers shared by the core modules: hashing, random ids, canonical JSON,
 * the wall clock. Thread: all functions are safe from any thread. */
#ifndef STW_UTIL_H
#define STW_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "steward.h"

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

#endif
