/* policy.h - principals, API keys, grants, suppressions and the policy version.
 *
 * API keys look like "stw_<key id: 16 hex>_<secret: 64 hex>"; the store keeps the key id and
 * SHA-256(secret) only, and authentication compares the hash in constant time. Every change
 * of grants or suppressions bumps the policy version and recomputes its hash over the
 * canonical form (docs/policy.md). Functions taking a sqlite3* run inside the caller's
 * transaction (write functions need a write transaction). */
#ifndef STW_POLICY_H
#define STW_POLICY_H

#include <sqlite3.h>
#include <stdint.h>

#include "steward.h"
#include "store.h"

/* Insert principal p with a fresh key written to key_out. 409 if the id exists. */
stw_code policy_principal_insert(sqlite3 *db, const stw_principal *p, char key_out[STW_KEY_MAX],
                                 stw_error *err);
/* sc: db's statement cache, or NULL. */
stw_code policy_authenticate(sqlite3 *db, struct stmt_cache *sc, const char *api_key,
                             stw_principal *out, stw_error *err);
/* 1 if the principal exists, 0 if not, -1 on error. */
int policy_principal_exists(sqlite3 *db, const char *id);

stw_code policy_grant_insert(sqlite3 *db, stw_grant *g, stw_error *err);
stw_code policy_grant_revoke(sqlite3 *db, const char *id, stw_error *err);
stw_code policy_suppression_insert(sqlite3 *db, stw_suppression *s, stw_error *err);
/* Mark an active suppression lifted; 404 unknown_suppression. product_out (may be NULL) gets
 * its product. */
stw_code policy_suppression_lift(sqlite3 *db, const char *id, char product_out[STW_NAME_MAX + 1],
                                 stw_error *err);

/* Increment the policy version and store the hash of the current policy. */
stw_code policy_bump(sqlite3 *db, int64_t *version_out, stw_error *err);
/* Owned: stw_policy_free(). */
stw_code policy_read(sqlite3 *db, stw_policy **out, stw_error *err);
stw_code policy_version(sqlite3 *db, int64_t *version_out, stw_error *err);

/* The grants of `principal` that cover `product` (directly or via `domain`) for `purpose`.
 * Owned: free(*out). *n_out may be 0. */
stw_code policy_grants_for(sqlite3 *db, const char *principal, const char *product,
                           const char *domain, int purpose, stw_grant **out, size_t *n_out,
                           stw_error *err);
/* Active suppressions of product. Owned: free(*out). */
stw_code policy_suppressions_for(sqlite3 *db, const char *product, stw_suppression **out,
                                 size_t *n_out, stw_error *err);

#endif
