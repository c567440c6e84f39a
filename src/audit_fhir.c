/* audit_fhir.c - the audit trail as FHIR R4 AuditEvent resources, one per line (NDJSON).
 *
 * One resource per audit event, in seq order, shaped after IHE Basic Audit Log Patterns
 * (BALP): the principal is the requesting agent, a query's purpose of use rides on that agent
 * (v3-ActReason), a query has one entity per returned chunk, one Patient entity per subject
 * those chunks are about, and one Query entity with the query id and the policy version it was
 * answered under. Refusals (query_denied, auth_failed) have outcome 4. docs/audit.md has the
 * full mapping and a real example line.
 *
 * Invariants: nothing leaves here that the trail itself does not hold; chunk text and vectors
 * are in neither (a query is known by its vector's SHA-256). Every resource carries its chain
 * fields (seq, the canonical detail, prev_hash, hash) in one extension, so an export can be
 * re-verified without the store: hash = SHA-256(prev_hash || canonical event), docs/audit.md.
 *
 * The export streams: one event, and for a query one receipt, is in memory at a time. */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "store.h"

#define SYS_EVENT_TYPE  "http://terminology.hl7.org/CodeSystem/audit-event-type"
#define SYS_RESTFUL     "http://hl7.org/fhir/restful-interaction"
#define SYS_DCM         "http://dicom.nema.org/resources/ontology/DCM"
#define SYS_ACT_REASON  "http://terminology.hl7.org/CodeSystem/v3-ActReason"
#define SYS_ENTITY_TYPE "http://terminology.hl7.org/CodeSystem/audit-entity-type"
#define SYS_OBJECT_ROLE "http://terminology.hl7.org/CodeSystem/object-role"
#define SYS_SOURCE_TYPE "http://terminology.hl7.org/CodeSystem/security-source-type"
#define SYS_STW_TYPE    "urn:steward:audit-event-type"
#define EXT_CHAIN       "urn:steward:fhir:audit-chain"

/* How each Steward event type maps. Types added later fall back to the last row. */
struct fhir_kind {
    const char *type;    /* Steward's event type */
    const char *subtype; /* http://hl7.org/fhir/restful-interaction code */
    const char *action;  /* C create, U update, D delete, E execute */
    const char *outcome; /* 0 success, 4 minor failure (a refusal) */
    const char *object;  /* detail field naming the event's main entity, or NULL */
    const char *system;  /* that entity's identifier system */
    const char *role;    /* its object-role code */
};

static const struct fhir_kind kinds[] = {
    {"query", "search-type", "E", "0", "query_id", "urn:steward:query", "24"},
    {"break_glass", "search-type", "E", "0", "query_id", "urn:steward:query", "24"},
    {"query_denied", "search-type", "E", "4", "product", "urn:steward:product", "17"},
    {"auth_failed", NULL, "E", "4", NULL, NULL, NULL},
    {"principal", "create", "C", "0", "id", "urn:steward:principal", "11"},
    {"product", "create", "C", "0", "product", "urn:steward:product", "17"},
    {"version", "create", "C", "0", "version", "urn:steward:version", "17"},
    {"ingest", "create", "C", "0", "version", "urn:steward:version", "17"},
    {"publish", "update", "U", "0", "version", "urn:steward:version", "17"},
    {"retire", "update", "U", "0", "version", "urn:steward:version", "17"},
    {"grant", "create", "C", "0", "grant", "urn:steward:grant", "13"},
    {"revoke", "delete", "D", "0", "grant", "urn:steward:grant", "13"},
    {"suppress", "create", "C", "0", "suppression", "urn:steward:suppression", "13"},
    {"unsuppress", "delete", "D", "0", "suppression", "urn:steward:suppression", "13"},
    {NULL, "operation", "E", "0", NULL, NULL, NULL},
};

static const struct fhir_kind *kind_of(const char *type)
{
    const struct fhir_kind *k = kinds;
    while (k->type != NULL && strcmp(k->type, type) != 0)
        k++;
    return k;
}

static const char *object_role_display(const char *code)
{
    static const struct {
        const char *code, *display;
    } roles[] = {{"1", "Patient"},
                 {"4", "Domain Resource"},
                 {"11", "Security User Entity"},
                 {"13", "Security Resource"},
                 {"17", "Data Repository"},
                 {"24", "Query"}};
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++)
        if (strcmp(roles[i].code, code) == 0)
            return roles[i].display;
    return NULL;
}

static cJSON *coding(const char *system, const char *code, const char *display)
{
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "system", system);
    cJSON_AddStringToObject(c, "code", code);
    if (display != NULL)
        cJSON_AddStringToObject(c, "display", display);
    return c;
}

static cJSON *concept(const char *system, const char *code, const char *display)
{
    cJSON *c = cJSON_CreateObject();
    cJSON_AddItemToArray(cJSON_AddArrayToObject(c, "coding"), coding(system, code, display));
    return c;
}

static void add_detail(cJSON *details, const char *type, const char *value)
{
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "type", type);
    cJSON_AddStringToObject(d, "valueString", value);
    cJSON_AddItemToArray(details, d);
}

/* entity.detail entries for every member of obj except those in skip (NULL-terminated):
 * strings as they are, anything else as its JSON text. */
static void add_details_from(cJSON *details, const cJSON *obj, const char *const *skip)
{
    const cJSON *m;
    cJSON_ArrayForEach(m, obj)
    {
        int skipped = 0;
        for (size_t i = 0; skip != NULL && skip[i] != NULL && !skipped; i++)
            skipped = strcmp(skip[i], m->string) == 0;
        if (skipped || cJSON_IsNull(m))
            continue;
        if (cJSON_IsString(m)) {
            add_detail(details, m->string, m->valuestring);
        } else {
            char *s = cJSON_PrintUnformatted(m);
            if (s != NULL)
                add_detail(details, m->string, s);
            cJSON_free(s);
        }
    }
}

/* A new entity {what.identifier, type, role, detail[]}; the detail array is returned in
 * *details_out (borrowed from the entity). */
static cJSON *entity_new(cJSON *entities, const char *system, const char *value,
                         const char *type_code, const char *role_code, cJSON **details_out)
{
    cJSON *e = cJSON_CreateObject(), *what, *ident;
    cJSON_AddItemToArray(entities, e);
    what = cJSON_AddObjectToObject(e, "what");
    ident = cJSON_AddObjectToObject(what, "identifier");
    cJSON_AddStringToObject(ident, "system", system);
    cJSON_AddStringToObject(ident, "value", value);
    cJSON_AddItemToObject(e, "type",
                          coding(SYS_ENTITY_TYPE, type_code,
                                 strcmp(type_code, "1") == 0 ? "Person" : "System Object"));
    cJSON_AddItemToObject(e, "role",
                          coding(SYS_OBJECT_ROLE, role_code, object_role_display(role_code)));
    if (details_out != NULL)
        *details_out = cJSON_AddArrayToObject(e, "detail");
    return e;
}

/* The query's entities from its stored receipt: the query (policy version, versions, k, the
 * vector's hash, filter), one per returned chunk, and one Patient per distinct subject. */
static stw_code query_entities(sqlite3_stmt *rstmt, const char *query_id, cJSON *entities,
                               stw_error *err)
{
    static const char *const skip_query[] = {"query_id", "at",      "principal",
                                             "purpose",  "results", NULL};
    cJSON *receipt = NULL, *details, *subjects = NULL;
    const cJSON *results, *r;
    char nbuf[32];
    stw_code rc = STW_OK;

    sqlite3_reset(rstmt);
    sqlite3_bind_text(rstmt, 1, query_id, -1, SQLITE_STATIC);
    switch (sqlite3_step(rstmt)) {
    case SQLITE_ROW: receipt = cJSON_Parse(store_col_text(rstmt, 0)); break;
    case SQLITE_DONE: break; /* no receipt: the event alone still says who asked */
    default: return store_error(sqlite3_db_handle(rstmt), err);
    }
    sqlite3_reset(rstmt);
    if (receipt == NULL) {
        entity_new(entities, "urn:steward:query", query_id, "2", "24", NULL);
        return STW_OK;
    }
    entity_new(entities, "urn:steward:query", query_id, "2", "24", &details);
    add_details_from(details, receipt, skip_query);
    results = cJSON_GetObjectItemCaseSensitive(receipt, "results");
    snprintf(nbuf, sizeof nbuf, "%d", cJSON_GetArraySize(results));
    add_detail(details, "results", nbuf);
    subjects = cJSON_CreateObject(); /* used as a set of subject names */
    if (subjects == NULL) {
        rc = stw_errorf(err, STW_NOMEM, NULL, "out of memory");
        goto done;
    }
    cJSON_ArrayForEach(r, results)
    {
        const char *product = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "product"));
        const char *version = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "version"));
        const char *chunk = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "chunk_id"));
        const char *subject = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "subject"));
        static const char *const skip_hit[] = {"product", "version", "chunk_id", NULL};
        size_t n;
        char *ref;

        if (product == NULL || version == NULL || chunk == NULL)
            continue;
        n = strlen(product) + strlen(version) + strlen(chunk) + 3;
        ref = malloc(n);
        if (ref == NULL) {
            rc = stw_errorf(err, STW_NOMEM, NULL, "out of memory");
            goto done;
        }
        snprintf(ref, n, "%s@%s/%s", product, version, chunk);
        entity_new(entities, "urn:steward:chunk", ref, "2", "4", &details);
        free(ref);
        add_details_from(details, r, skip_hit);
        if (subject != NULL && !cJSON_HasObjectItem(subjects, subject))
            cJSON_AddTrueToObject(subjects, subject);
    }
    cJSON_ArrayForEach(r, subjects)
    {
        entity_new(entities, "urn:steward:subject", r->string, "1", "1", NULL);
    }
done:
    cJSON_Delete(subjects);
    cJSON_Delete(receipt);
    return rc;
}

/* The AuditEvent for the current row of stmt (seq, at_ms, type, principal, detail, prev_hash,
 * hash). Owned: cJSON_Delete. */
static stw_code event_resource(sqlite3_stmt *stmt, sqlite3_stmt *rstmt, cJSON **out, stw_error *err)
{
    const char *type = store_col_text(stmt, 2) ? store_col_text(stmt, 2) : "";
    const char *principal = store_col_text(stmt, 3);
    const char *detail_text = store_col_text(stmt, 4);
    const struct fhir_kind *k = kind_of(type);
    cJSON *ev = cJSON_CreateObject(), *detail = cJSON_Parse(detail_text);
    cJSON *chain, *agents, *agent, *source, *entities, *sub;
    const char *purpose = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(detail, "purpose"));
    const char *reason = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(detail, "reason"));
    char seq[32], at[32];
    stw_code rc = STW_OK;

    if (ev == NULL) {
        cJSON_Delete(detail);
        return stw_errorf(err, STW_NOMEM, NULL, "out of memory");
    }
    snprintf(seq, sizeof seq, "%lld", (long long)sqlite3_column_int64(stmt, 0));
    stw_time_format(sqlite3_column_int64(stmt, 1), at);
    cJSON_AddStringToObject(ev, "resourceType", "AuditEvent");
    cJSON_AddStringToObject(ev, "id", seq);

    /* the chain fields, enough to recompute hash without the store */
    chain = cJSON_CreateObject();
    cJSON_AddStringToObject(chain, "url", EXT_CHAIN);
    sub = cJSON_AddArrayToObject(chain, "extension");
    {
        static const char *const names[] = {"seq", "type", "detail", "prev_hash", "hash"};
        const char *values[] = {seq, type, detail_text, store_col_text(stmt, 5),
                                store_col_text(stmt, 6)};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            cJSON *x = cJSON_CreateObject();
            cJSON_AddStringToObject(x, "url", names[i]);
            cJSON_AddStringToObject(x, "valueString", values[i] ? values[i] : "");
            cJSON_AddItemToArray(sub, x);
        }
    }
    cJSON_AddItemToArray(cJSON_AddArrayToObject(ev, "extension"), chain);

    if (strcmp(type, "auth_failed") == 0) {
        cJSON_AddItemToObject(ev, "type", coding(SYS_DCM, "110114", "User Authentication"));
        sub = cJSON_AddArrayToObject(ev, "subtype");
        cJSON_AddItemToArray(sub, coding(SYS_DCM, "110122", "Login"));
    } else {
        cJSON_AddItemToObject(ev, "type", coding(SYS_EVENT_TYPE, "rest", "RESTful Operation"));
        sub = cJSON_AddArrayToObject(ev, "subtype");
        cJSON_AddItemToArray(sub, coding(SYS_RESTFUL, k->subtype, NULL));
    }
    cJSON_AddItemToArray(sub, coding(SYS_STW_TYPE, type, NULL));
    cJSON_AddStringToObject(ev, "action", k->action);
    cJSON_AddStringToObject(ev, "recorded", at);
    cJSON_AddStringToObject(ev, "outcome", k->outcome);
    if (strcmp(k->outcome, "0") != 0 && reason != NULL)
        cJSON_AddStringToObject(ev, "outcomeDesc", reason);

    /* who asked (requestor), and steward answering */
    agents = cJSON_AddArrayToObject(ev, "agent");
    agent = cJSON_CreateObject();
    cJSON_AddItemToArray(agents, agent);
    cJSON_AddItemToObject(agent, "type", concept(SYS_DCM, "110153", "Source Role ID"));
    if (principal != NULL) {
        cJSON *who = cJSON_AddObjectToObject(agent, "who"), *id;
        id = cJSON_AddObjectToObject(who, "identifier");
        cJSON_AddStringToObject(id, "system", "urn:steward:principal");
        cJSON_AddStringToObject(id, "value", principal);
    } else {
        cJSON_AddStringToObject(cJSON_AddObjectToObject(agent, "who"), "display",
                                strcmp(type, "auth_failed") == 0 ? "unauthenticated caller"
                                                                 : "steward init");
    }
    cJSON_AddBoolToObject(agent, "requestor", 1);
    if (purpose != NULL && stw_purpose_parse(purpose) >= 0)
        cJSON_AddItemToArray(cJSON_AddArrayToObject(agent, "purposeOfUse"),
                             concept(SYS_ACT_REASON, purpose, NULL));
    agent = cJSON_CreateObject();
    cJSON_AddItemToArray(agents, agent);
    cJSON_AddItemToObject(agent, "type", concept(SYS_DCM, "110152", "Destination Role ID"));
    cJSON_AddStringToObject(cJSON_AddObjectToObject(agent, "who"), "display", "steward");
    cJSON_AddBoolToObject(agent, "requestor", 0);

    source = cJSON_AddObjectToObject(ev, "source");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(source, "observer"), "display", "steward");
    cJSON_AddItemToArray(cJSON_AddArrayToObject(source, "type"),
                         coding(SYS_SOURCE_TYPE, "4", "Application Server"));

    entities = cJSON_AddArrayToObject(ev, "entity");
    if (strcmp(type, "query") == 0) {
        const char *qid =
            cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(detail, "query_id"));
        if (qid != NULL)
            rc = query_entities(rstmt, qid, entities, err);
    } else if (k->object != NULL && cJSON_IsObject(detail)) {
        const char *obj = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(detail, k->object));
        const char *product =
            cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(detail, "product"));
        char ref[2 * STW_NAME_MAX + 2];
        cJSON *details;
        if (strcmp(k->object, "version") == 0 && obj != NULL && product != NULL) {
            snprintf(ref, sizeof ref, "%s@%s", product, obj);
            obj = ref;
        }
        if (obj != NULL) {
            entity_new(entities, k->system, obj, "2", k->role, &details);
            add_details_from(details, detail, NULL);
        }
    }
    if (cJSON_GetArraySize(entities) == 0)
        cJSON_DeleteItemFromObjectCaseSensitive(ev, "entity"); /* R4: entity is 0..* */
    cJSON_Delete(detail);
    if (rc != STW_OK) {
        cJSON_Delete(ev);
        return rc;
    }
    *out = ev;
    return STW_OK;
}

stw_code audit_export_fhir(sqlite3 *db, int64_t since, int64_t until, stw_emit_fn emit, void *ctx,
                           stw_error *err)
{
    sqlite3_stmt *stmt = NULL, *rstmt = NULL;
    int step;
    stw_code rc;

    /* "+at_ms": walk the table in seq order rather than sort an index range */
    rc = store_prepare(db, &stmt,
                       "SELECT seq, at_ms, type, principal, detail, prev_hash, hash"
                       " FROM audit_events WHERE +at_ms >= ?1 AND +at_ms < ?2 ORDER BY seq",
                       err);
    if (rc == STW_OK)
        rc = store_prepare(db, &rstmt, "SELECT receipt FROM receipts WHERE query_id = ?1", err);
    if (rc != STW_OK)
        goto done;
    sqlite3_bind_int64(stmt, 1, since == STW_TIME_NONE ? INT64_MIN : since);
    sqlite3_bind_int64(stmt, 2, until == STW_TIME_NONE ? INT64_MAX : until);
    while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
        cJSON *ev = NULL;
        char *line;
        int stop;

        rc = event_resource(stmt, rstmt, &ev, err);
        if (rc != STW_OK)
            goto done;
        line = cJSON_PrintUnformatted(ev);
        cJSON_Delete(ev);
        if (line == NULL) {
            rc = stw_errorf(err, STW_NOMEM, NULL, "out of memory");
            goto done;
        }
        stop = emit(ctx, line);
        cJSON_free(line);
        if (stop != 0) {
            rc = stw_errorf(err, STW_UNAVAILABLE, "export_stopped",
                            "the export was stopped by its output");
            goto done;
        }
    }
    if (step != SQLITE_DONE)
        rc = store_error(db, err);
done:
    sqlite3_finalize(stmt);
    sqlite3_finalize(rstmt);
    return rc;
}
