/* demo.c - `steward demo`: build a sandbox store and show governed retrieval at work.
 *
 * Everything goes through the public API (steward.h) in-process, with real principals:
 * stw_init gives the admin key, each caller signs in with its own key, and every refusal shown
 * is the core's own 403. The corpus is generated from the static tables below (templates x
 * synthetic patients x two visits), so it is small, realistic and identical on every run.
 * The embedder is deliberately simple: lowercase word unigrams and bigrams, feature-hashed
 * (FNV-1a) into 256 signed dimensions, sublinear tf, L2-normalised; queries use the same
 * embedder, so lexical overlap drives the ranking and a reader can see why a chunk came back.
 * Invariant: the admin key is never printed and never written to disk.
 */
#include "demo.h"

#include <cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "steward.h"

#define DEMO_DIM         256
#define DEMO_MAX_FEAT    1024
#define DEMO_SNIPPET     70
#define DEMO_NVISITS     2
#define DEMO_WIDTH       96
#define DEMO_MAX_REFS    8
#define DEMO_DEFAULT_DIR "steward-demo"
#define N_OF(a)          (sizeof(a) / sizeof((a)[0]))

/* ---- corpus: synthetic patients and templates --------------------------------------------- */

enum { C_CARD = 1u, C_DM = 2u, C_PSY = 4u, C_HIV = 8u, C_SUD = 16u, C_HTN = 32u };

/* Measurements: [0] baseline, [1] visit 1 (September 2026), [2] visit 2 (October 2026). */
typedef struct demo_patient {
    const char *id, *sex;
    unsigned age, cond, egfr;
    double a1c[3], trop[3], ldl[3], phq9[3], vl[3], cd4[3], bup[3];
} demo_patient;

/* clang-format off */
static const demo_patient demo_patients[] = {
    {"patient-0001", "male",   58, C_CARD | C_DM | C_HTN, 74,  {8.9, 8.1, 7.4}, {4, 412, 18},
     {168, 142, 88},  {3, 2, 2},    {0},              {0},             {0}},
    {"patient-0002", "female", 64, C_DM | C_HTN,          55,  {7.2, 7.6, 7.9}, {3, 4, 3},
     {131, 122, 104}, {2, 2, 1},    {0},              {0},             {0}},
    {"patient-0003", "female", 34, C_PSY,                 104, {5.3, 5.4, 5.3}, {2, 3, 2},
     {108, 110, 106}, {19, 17, 11}, {0},              {0},             {0}},
    {"patient-0004", "male",   41, C_HIV | C_PSY,         96,  {5.6, 5.5, 5.7}, {3, 3, 4},
     {121, 118, 119}, {14, 14, 12}, {48200, 1450, 0}, {212, 318, 402}, {0}},
    {"patient-0005", "male",   29, C_SUD,                 118, {5.1, 5.2, 5.1}, {2, 2, 3},
     {96, 99, 101},   {4, 3, 2},    {0},              {0},             {0, 16, 16}},
    {"patient-0006", "female", 71, C_CARD | C_HTN,        61,  {6.0, 6.1, 6.0}, {6, 11, 9},
     {151, 139, 97},  {3, 3, 2},    {0},              {0},             {0}},
    {"patient-0007", "male",   47, C_DM | C_SUD,          88,  {9.8, 9.1, 8.3}, {3, 3, 3},
     {144, 140, 121}, {5, 4, 3},    {0},              {0},             {0, 8, 12}},
    {"patient-0008", "female", 52, C_CARD | C_DM | C_HIV, 81,  {7.9, 7.5, 7.1}, {5, 96, 22},
     {159, 118, 79},  {2, 2, 2},    {220, 40, 0},     {540, 560, 610}, {0}},
};
/* clang-format on */

/* {name} is a measurement at this visit, {name_prev} at the one before; 0 prints `zero`. */
static const struct {
    const char *name;
    size_t off;
    int decimals;
    const char *zero;
} demo_nums[] = {
    {"a1c", offsetof(demo_patient, a1c), 1, NULL}, {"trop", offsetof(demo_patient, trop), 0, NULL},
    {"ldl", offsetof(demo_patient, ldl), 0, NULL}, {"phq9", offsetof(demo_patient, phq9), 0, NULL},
    {"vl", offsetof(demo_patient, vl), 0, "<20"},  {"cd4", offsetof(demo_patient, cd4), 0, NULL},
    {"bup", offsetof(demo_patient, bup), 0, NULL},
};

/* A template applies to patients with any `need` condition (0: all) and no `excl` one, at
 * `visit` (0: both). `labels` is "CONF [COMPARTMENT]". {a|b} in the text picks a at visit 1
 * and b at visit 2; other {placeholders} are expanded by demo_field(). */
typedef struct demo_tmpl {
    unsigned need, excl;
    int visit;
    const char *doc, *section, *labels, *meta, *text;
} demo_tmpl;

#define M_(role)  "{\"author_role\":\"" role "\"}"
#define M_LAB(lc) "{\"performing_lab\":\"core-lab\",\"loinc\":\"" lc "\"}"
#define M_RX      "{\"author_role\":\"pharmacist\",\"pharmacy\":\"outpatient\"}"
#define M_COH     "{\"dataset\":\"cardiometabolic-cohort\",\"deid_method\":\"safe_harbor\"}"

static const demo_tmpl demo_clinical[] = {
    {C_CARD, 0, 1, "ed", "hpi", "N", M_("emergency_physician"),
     "ED visit {date}: {age}-year-old {sex} with substernal chest pain radiating to the left arm "
     "for 2 hours, diaphoresis and shortness of breath. History of hypertension, former smoker."},
    {C_CARD, 0, 1, "ed", "assessment", "N", M_("emergency_physician"),
     "Assessment: acute chest pain. High-sensitivity troponin I {trop} ng/L, {trop_flag}. {acs}"},
    {C_CARD, 0, 2, "cards", "followup", "N", M_("cardiologist"),
     "Cardiology follow-up after the chest pain visit: troponin peaked at {trop_prev} ng/L, now "
     "{trop} ng/L; no recurrent angina. LDL {ldl} mg/dL; continue atorvastatin 80 mg, aspirin."},
    {C_CARD, 0, 0, "edu", "chest-pain", "L", M_("nurse"),
     "Patient instructions: call 911 for chest pain lasting more than 5 minutes, fainting or "
     "severe shortness of breath. Use nitroglycerin 0.4 mg under the tongue as directed."},
    {C_DM, 0, 0, "pcp", "diabetes", "N", M_("primary_care_physician"),
     "Type 2 diabetes follow-up: HbA1c {a1c}% (previous {a1c_prev}%), {a1c_trend}. Continue "
     "metformin 1000 mg twice daily; foot exam normal; retinal exam ordered."},
    {C_HTN, 0, 0, "pcp", "hypertension", "N", M_("primary_care_physician"),
     "Hypertension: blood pressure {142/88|134/82} mmHg on lisinopril 20 mg daily; reduce sodium "
     "intake; recheck in 3 months."},
    {C_HTN, C_PSY, 2, "pcp", "screening", "N", M_("primary_care_physician"),
     "Depression screening: PHQ-2 score 0, negative; no follow-up needed. Influenza vaccine "
     "given."},
    {C_HTN, C_PSY, 2, "pcp", "substance-use", "N", M_("primary_care_physician"),
     "Substance use screening (TAPS): negative for opioid use and other drug use; counselled on "
     "safe storage of medicines."},
    {C_HTN, 0, 2, "pcp", "pain", "N", M_("primary_care_physician"),
     "Knee osteoarthritis pain: acetaminophen 1 g three times daily, maximum dose 3 g per day; "
     "avoid NSAIDs; no opioid analgesics given fall risk and age."},
    {C_DM, 0, 2, "edu", "diabetes", "M", M_("diabetes_educator"),
     "Diabetes self-management education: glucose meter technique, recognising hypoglycemia, "
     "carbohydrate counting and sick-day rules."},
    {C_PSY, 0, 1, "psy", "assessment", "R PSY", M_("psychiatrist"),
     "Psychiatric evaluation: major depressive disorder, recurrent, severe; PHQ-9 {phq9}. Passive "
     "suicidal ideation without plan or intent. Safety plan completed; start sertraline 50 mg."},
    {C_PSY, 0, 2, "psy", "followup", "R PSY", M_("psychiatrist"),
     "Psychiatry follow-up for depression: PHQ-9 {phq9} (previous {phq9_prev}); {si}. Sertraline "
     "increased to 100 mg daily; weekly psychotherapy; follow-up in 4 weeks."},
    {C_PSY, 0, 0, "psy", "therapy", "V PSY", M_("psychologist"),
     "Psychotherapy session note: CBT for depression; explored hopelessness and suicidal "
     "thoughts, rehearsed the safety plan and coping skills."},
    {C_HIV, 0, 0, "id", "assessment", "R HIV", M_("infectious_disease_physician"),
     "HIV clinic visit: HIV-1 viral load {vl} copies/mL ({vl_flag}), CD4 {cd4} cells/uL. "
     "Adherent to bictegravir/emtricitabine/tenofovir alafenamide; continue ART."},
    {C_SUD, 0, 1, "sud", "intake", "V SUD", M_("addiction_medicine_physician"),
     "42 CFR Part 2 program intake: opioid use disorder, severe. Buprenorphine-naloxone induction, "
     "dose titrated to {bup} mg daily; urine drug screen positive for fentanyl; naloxone kit."},
    {C_SUD, 0, 2, "sud", "followup", "R SUD", M_("addiction_medicine_physician"),
     "Opioid use disorder follow-up (42 CFR Part 2): stable on buprenorphine-naloxone {bup} mg "
     "daily, no cravings; urine drug screen negative for fentanyl. Next visit in 2 weeks."},
};

static const demo_tmpl demo_labs[] = {
    {C_CARD, 0, 0, "lab", "troponin", "N", M_LAB("89579-7"),
     "High-sensitivity troponin I, indication chest pain: {trop} ng/L (reference < 34 ng/L), "
     "{trop_flag}. Collected {date}."},
    {C_DM, 0, 0, "lab", "hba1c", "N", M_LAB("4548-4"),
     "Hemoglobin A1c (HbA1c): {a1c}% (reference 4.0-5.6%). Previous HbA1c {a1c_prev}%, "
     "{a1c_trend}. Estimated average glucose {glucose} mg/dL."},
    {0, 0, 0, "lab", "lipids", "N", M_LAB("57698-3"),
     "Lipid panel: LDL cholesterol {ldl} mg/dL, HDL 46 mg/dL, triglycerides 168 mg/dL."},
    {0, 0, 0, "lab", "bmp", "N", M_LAB("51990-0"),
     "Basic metabolic panel: sodium 139 mmol/L, potassium 4.2 mmol/L, creatinine 1.0 mg/dL, "
     "eGFR {egfr} mL/min/1.73m2, glucose {glucose} mg/dL."},
    {0, 0, 1, "lab", "cbc", "M", M_LAB("58410-2"),
     "Complete blood count: WBC 7.2 x10^9/L, hemoglobin 13.8 g/dL, platelets 245 x10^9/L."},
    {C_DM, 0, 2, "lab", "uacr", "N", M_LAB("9318-7"),
     "Urine albumin-to-creatinine ratio 42 mg/g, moderately increased (diabetic kidney disease)."},
    {C_PSY, 0, 0, "lab", "tsh", "N", M_LAB("3016-3"),
     "Thyroid-stimulating hormone 2.1 mIU/L, within the reference range (depression workup)."},
    {C_HIV, 0, 0, "lab", "hiv-rna", "R HIV", M_LAB("20447-9"),
     "HIV-1 RNA quantitative PCR: {vl} copies/mL ({vl_flag}). CD4 T-cell count {cd4} cells/uL."},
    {C_SUD, 0, 0, "lab", "uds", "R SUD", M_LAB("19659-2"),
     "Urine drug screen, 42 CFR Part 2 program: buprenorphine positive, fentanyl "
     "{positive|negative}, opiates negative."},
};

static const demo_tmpl demo_pharmacy[] = {
    {C_CARD, 0, 1, "rx", "aspirin", "N", M_RX,
     "Dispensed aspirin 81 mg enteric-coated tablet: 1 tablet by mouth daily. Quantity 90."},
    {C_CARD | C_DM, 0, 0, "rx", "atorvastatin", "N", M_RX,
     "Dispensed atorvastatin 80 mg tablet: 1 tablet at bedtime, high-intensity statin for LDL "
     "{ldl} mg/dL. Quantity 30."},
    {C_CARD, 0, 1, "rx", "nitroglycerin", "N", M_RX,
     "Dispensed nitroglycerin 0.4 mg sublingual: 1 tablet every 5 minutes as needed for chest "
     "pain, maximum 3 doses."},
    {C_DM, 0, 0, "rx", "metformin", "N", M_RX,
     "Dispensed metformin 1000 mg tablet: 1 tablet twice daily with meals. Last HbA1c {a1c}%."},
    {C_HTN, 0, 0, "rx", "lisinopril", "N", M_RX,
     "Dispensed lisinopril 20 mg tablet: 1 tablet by mouth daily; counselled on cough."},
    {0, 0, 1, "rx", "acetaminophen", "M", M_RX,
     "Dispensed acetaminophen 500 mg: 1-2 tablets every 6 hours as needed for pain; maximum dose "
     "3 g per day."},
    {C_PSY, 0, 0, "rx", "sertraline", "R PSY", M_RX,
     "Dispensed sertraline {50|100} mg tablet daily for depression; counselled on the boxed "
     "warning about suicidal thoughts."},
    {C_HIV, 0, 0, "rx", "art", "R HIV", M_RX,
     "Dispensed bictegravir/emtricitabine/tenofovir alafenamide 1 tablet daily; adherence "
     "counselling."},
    {C_SUD, 0, 0, "rx", "buprenorphine", "R SUD", M_RX,
     "Dispensed buprenorphine-naloxone {bup} mg sublingual film, once daily dose for opioid use "
     "disorder. 42 CFR Part 2: redisclosure prohibited."},
    {C_SUD, 0, 1, "rx", "naloxone", "R SUD", M_RX,
     "Dispensed naloxone 4 mg nasal spray, 2 devices, for opioid overdose rescue."},
};

static const demo_tmpl demo_research[] = {
    {0, 0, 0, "cohort", "summary", "N", M_COH,
     "De-identified cohort member, age band {ageband}, {sex}. Conditions: {conds}. Follow-up "
     "month {month}."},
    {C_DM, 0, 0, "cohort", "glycemic", "N", M_COH,
     "Glycemic outcome at month {month}: HbA1c {a1c}% versus {a1c_prev}% before ({a1c_trend}) on "
     "metformin; diabetic patients are followed every 3 months."},
    {C_CARD, 0, 0, "cohort", "cardiac", "N", M_COH,
     "Cardiovascular outcome at month {month} after an index chest pain event: peak troponin "
     "{trop} ng/L, LDL {ldl} mg/dL on high-intensity statin; no major adverse cardiac event."},
    {C_PSY, 0, 0, "cohort", "mental-health", "R PSY", M_COH,
     "Mental health outcome at month {month}: PHQ-9 {phq9} on an SSRI."},
};

static const struct demo_product_def {
    const char *name, *domain, *owner, *source_system, *record_prefix, *description;
    int deidentified;
    const demo_tmpl *tmpl;
    size_t ntmpl;
} demo_products[] = {
    {"clinical-notes", "clinical", "clinical-informatics", "ehr", "enc",
     "EHR notes: ED, primary care, cardiology, psychiatry, HIV and addiction clinics", 0,
     demo_clinical, N_OF(demo_clinical)},
    {"lab-results", "labs", "laboratory-medicine", "lis", "acc",
     "Resulted laboratory tests, one chunk per test", 0, demo_labs, N_OF(demo_labs)},
    {"pharmacy-dispensing", "pharmacy", "pharmacy-services", "pharmacy", "fill",
     "Outpatient dispensing records", 0, demo_pharmacy, N_OF(demo_pharmacy)},
    {"research-cohort-deid", "research", "research-data-office", "cdw", "row",
     "De-identified (Safe Harbor) cardiometabolic cohort outcomes", 1, demo_research,
     N_OF(demo_research)},
};
typedef struct demo_product_def demo_product_def;

/* Loaded in this order: lab-results first gets a version with the September visits only. */
static const struct {
    size_t product;
    const char *version;
    int last_visit;
} demo_versions[] = {{1, "2026-10-01", 1},
                     {0, "2026-11-01", 2},
                     {1, "2026-11-01", 2},
                     {2, "2026-11-01", 2},
                     {3, "2026-11-01", 2}};

/* ---- callers, grants and the questions they ask ------------------------------------------- */

static const struct {
    const char *id;
    unsigned roles;
} demo_principals[] = {{"rag-clinician", STW_ROLE_CONSUMER},
                       {"rag-psychiatry", STW_ROLE_CONSUMER},
                       {"rag-addiction", STW_ROLE_CONSUMER},
                       {"rag-research", STW_ROLE_CONSUMER},
                       {"auditor", STW_ROLE_AUDITOR}};
#define DEMO_NPRINCIPALS N_OF(demo_principals)

#define PU(p) (1u << STW_PURPOSE_##p)
static const struct {
    const char *principal, *product, *domain;
    uint32_t purposes;
    int clearance;
    const char *comp;
} demo_grants[] = {
    {"rag-clinician", "", "clinical", PU(TREAT) | PU(ETREAT), STW_CONF_N, NULL},
    {"rag-clinician", "", "labs", PU(TREAT) | PU(ETREAT), STW_CONF_N, NULL},
    {"rag-clinician", "", "pharmacy", PU(TREAT) | PU(ETREAT), STW_CONF_N, NULL},
    {"rag-psychiatry", "", "clinical", PU(TREAT), STW_CONF_R, "PSY"},
    {"rag-addiction", "", "clinical", PU(TREAT), STW_CONF_V, "SUD"},
    {"rag-addiction", "", "pharmacy", PU(TREAT), STW_CONF_V, "SUD"},
    {"rag-research", "research-cohort-deid", "", PU(HRESCH), STW_CONF_N, NULL},
};

typedef struct demo_ask {
    const char *caller, *purpose;
    const char *products; /* space-separated "name" or "name@version" */
    int as_of;            /* 1: every product as of the moment between the lab-results publishes */
    const char *subject;  /* narrowing filter, or NULL */
} demo_ask;

#define ALL3 "clinical-notes lab-results pharmacy-dispensing"
static const struct {
    const char *text;
    demo_ask asks[4];
} demo_questions[] = {
    {"chest pain troponin elevated",
     {{"rag-clinician", "TREAT", ALL3, 0, NULL},
      {"rag-psychiatry", "TREAT", "clinical-notes", 0, NULL},
      {"rag-research", "HRESCH", "research-cohort-deid", 0, NULL},
      {"rag-research", "HRESCH", "clinical-notes lab-results", 0, NULL}}},
    {"depression and suicidal ideation follow-up",
     {{"rag-clinician", "TREAT", ALL3, 0, NULL},
      {"rag-psychiatry", "TREAT", "clinical-notes", 0, NULL},
      {"rag-clinician", "HMARKT", "clinical-notes", 0, NULL}}},
    {"buprenorphine dose for opioid use disorder",
     {{"rag-clinician", "TREAT", ALL3, 0, NULL},
      {"rag-psychiatry", "TREAT", "clinical-notes", 0, NULL},
      {"rag-addiction", "TREAT", "clinical-notes pharmacy-dispensing", 0, NULL},
      {"rag-psychiatry", "TREAT", "pharmacy-dispensing", 0, NULL}}},
    {"HbA1c trend in diabetic patients",
     {{"rag-clinician", "TREAT", "lab-results clinical-notes", 0, NULL},
      {"rag-research", "HRESCH", "research-cohort-deid", 0, NULL},
      {"rag-research", "HRESCH", "lab-results", 0, NULL}}},
};

static const demo_ask demo_pinned[] = {
    {"rag-clinician", "TREAT", "lab-results", 0, NULL},
    {"rag-clinician", "TREAT", "lab-results@2026-10-01", 0, NULL},
    {"rag-clinician", "TREAT", "lab-results", 1, NULL},
};
static const demo_ask demo_consent = {"rag-clinician", "TREAT", "clinical-notes", 0,
                                      "patient-0006"};

static const char *const demo_stopwords[] = {"a",  "an",  "and", "are", "as",  "at",   "be",
                                             "by", "for", "in",  "is",  "no",  "not",  "of",
                                             "on", "or",  "the", "to",  "was", "with", "from"};

/* ---- run state ---------------------------------------------------------------------------- */

typedef struct demo_ctx {
    const char *arg_dir; /* --data as given */
    stw_db *db;
    const char *bold, *dim, *red, *reset; /* ANSI sequences, or "" when not a terminal */
    char dir[PATH_MAX], exe[PATH_MAX];
    stw_principal admin, callers[DEMO_NPRINCIPALS]; /* callers: order of demo_principals[] */
    char clinician_key[STW_KEY_MAX], receipt_qid[STW_QUERY_ID_MAX];
    int64_t visit_ms[DEMO_NVISITS + 1];
    int64_t between_ms; /* after lab-results@2026-10-01 was published, before 2026-11-01 */
    stw_error err;
} demo_ctx;

/* One generated chunk owning all its strings; its stw_chunk borrows from it. */
typedef struct demo_item {
    char id[96], doc[64], record[64], subject[32], created[32], conf[4], text[512], prov[640];
    const char *comp;
    float vec[DEMO_DIM];
} demo_item;

/* ---- the demo embedder -------------------------------------------------------------------- */

typedef struct demo_feat {
    uint64_t h;
    double w;
} demo_feat;

/* FNV-1a, then murmur3's finaliser: FNV's low bits alone index poorly. */
static uint64_t demo_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    h = (h ^ (h >> 33)) * 0xff51afd7ed558ccdULL;
    return h ^ (h >> 33);
}

static int demo_cmp_feat(const void *a, const void *b)
{
    const demo_feat *x = a, *y = b;
    return (x->h > y->h) - (x->h < y->h);
}

/* Unigrams (weight 1) and adjacent-word bigrams (0.7); tf becomes 1 + ln(tf); bit 20 of the
 * hash gives the sign, so collisions cancel out on average instead of piling up. */
static void demo_embed(const char *text, float out[DEMO_DIM])
{
    demo_feat feat[DEMO_MAX_FEAT];
    char tok[32], prev[32] = "";
    size_t nfeat = 0, ntok = 0;
    double v[DEMO_DIM] = {0}, norm = 0;

    for (const char *s = text;; s++) {
        const unsigned char ch = (unsigned char)*s;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')) {
            if (ntok + 1 < sizeof tok)
                tok[ntok++] = (char)(ch >= 'A' && ch <= 'Z' ? ch + ('a' - 'A') : ch);
            continue;
        }
        tok[ntok] = '\0';
        int stop = ntok == 0 || nfeat + 2 > DEMO_MAX_FEAT;
        for (size_t i = 0; i < N_OF(demo_stopwords) && !stop; i++)
            stop = strcmp(tok, demo_stopwords[i]) == 0;
        if (!stop) {
            char bigram[2 * sizeof tok];
            feat[nfeat++] = (demo_feat){demo_hash(tok), 1.0};
            snprintf(bigram, sizeof bigram, "%s %s", prev, tok);
            if (prev[0] != '\0')
                feat[nfeat++] = (demo_feat){demo_hash(bigram), 0.7};
            memcpy(prev, tok, sizeof prev);
        }
        ntok = 0;
        if (ch == '\0')
            break;
    }
    qsort(feat, nfeat, sizeof feat[0], demo_cmp_feat);
    for (size_t i = 0, j; i < nfeat; i = j) {
        for (j = i; j < nfeat && feat[j].h == feat[i].h;)
            j++;
        const double w = feat[i].w * (1.0 + log((double)(j - i)));
        v[feat[i].h % DEMO_DIM] += ((feat[i].h >> 20) & 1u) ? -w : w;
    }
    for (size_t i = 0; i < DEMO_DIM; i++)
        norm += v[i] * v[i];
    norm = norm > 0 ? sqrt(norm) : 1;
    for (size_t i = 0; i < DEMO_DIM; i++)
        out[i] = (float)(v[i] / norm);
    if (nfeat == 0)
        out[0] = 1.0f; /* a text without words still gets a unit vector */
}

/* ---- template expansion ------------------------------------------------------------------- */

/* Writes placeholder `key` of patient p at visit v (created: the chunk's time); -1 if unknown. */
static int demo_field(const demo_patient *p, int v, const char *created, const char *key, char *out,
                      size_t cap)
{
    const char *bar = strchr(key, '|');
    const size_t glucose = (size_t)lround(28.7 * p->a1c[v] - 46.7); /* ADAG estimate */

    if (bar != NULL) { /* {visit-1 text|visit-2 text} */
        snprintf(out, cap, "%.*s", v == 1 ? (int)(bar - key) : (int)strlen(bar + 1),
                 v == 1 ? key : bar + 1);
        return 0;
    }
    for (size_t i = 0; i < N_OF(demo_nums); i++) {
        const double *x = (const double *)(const void *)((const char *)p + demo_nums[i].off);
        const size_t len = strlen(demo_nums[i].name);
        const int prev =
            strncmp(key, demo_nums[i].name, len) == 0 && strcmp(key + len, "_prev") == 0;
        if (strcmp(key, demo_nums[i].name) != 0 && !prev)
            continue;
        if (x[v - prev] == 0 && demo_nums[i].zero != NULL)
            snprintf(out, cap, "%s", demo_nums[i].zero);
        else
            snprintf(out, cap, "%.*f", demo_nums[i].decimals, x[v - prev]);
        return 0;
    }
    const double da1c = p->a1c[v] - p->a1c[v - 1];
    const int card = (p->cond & C_CARD) != 0, dm = (p->cond & C_DM) != 0;
    const int htn = (p->cond & C_HTN) != 0, high = p->trop[v] > 34;
    if (strcmp(key, "age") == 0)
        snprintf(out, cap, "%u", p->age);
    else if (strcmp(key, "sex") == 0)
        snprintf(out, cap, "%s", p->sex);
    else if (strcmp(key, "ageband") == 0)
        snprintf(out, cap, "%u-%u", p->age / 5 * 5, p->age / 5 * 5 + 4);
    else if (strcmp(key, "date") == 0)
        snprintf(out, cap, "%.10s", created);
    else if (strcmp(key, "month") == 0)
        snprintf(out, cap, "%d", 3 * v);
    else if (strcmp(key, "egfr") == 0)
        snprintf(out, cap, "%u", p->egfr);
    else if (strcmp(key, "glucose") == 0)
        snprintf(out, cap, "%zu", glucose);
    else if (strcmp(key, "a1c_trend") == 0)
        snprintf(out, cap, "%s", da1c < -0.2 ? "improving" : da1c > 0.2 ? "worsening" : "stable");
    else if (strcmp(key, "vl_flag") == 0)
        snprintf(out, cap, "%s", p->vl[v] < 200 ? "suppressed" : "not suppressed");
    else if (strcmp(key, "trop_flag") == 0)
        snprintf(out, cap, "%s", high ? "elevated above the 99th percentile" : "within reference");
    else if (strcmp(key, "acs") == 0)
        snprintf(out, cap, "%s",
                 high ? "ECG: ST depression V4-V6. NSTEMI; aspirin, heparin, admit to cardiology."
                      : "ECG without ischemic change; HEART score 3. Outpatient stress test.");
    else if (strcmp(key, "si") == 0)
        snprintf(out, cap, "%s",
                 p->phq9[v - 1] - p->phq9[v] >= 3
                     ? "suicidal ideation resolved, denies thoughts of self-harm"
                     : "passive suicidal ideation persists, no plan or intent");
    else if (strcmp(key, "conds") == 0)
        snprintf(out, cap, "%s%s%s%s%s%s", card ? "coronary artery disease" : "",
                 card && (dm || htn) ? ", " : "", dm ? "type 2 diabetes" : "",
                 dm && htn ? ", " : "", htn ? "hypertension" : "",
                 card || dm || htn ? "" : "none of the cohort conditions");
    else
        return -1;
    return 0;
}

/* Expands every {placeholder} of tmpl; -1 on an unknown one or if the result does not fit. */
static int demo_expand(const demo_patient *p, int v, const char *created, const char *tmpl,
                       char *out, size_t cap)
{
    size_t o = 0;

    for (const char *s = tmpl; *s != '\0';) {
        const char *end = *s == '{' ? strchr(s, '}') : NULL;
        char key[48], val[160];
        const char *src = s;
        size_t len = 1;
        if (end != NULL) {
            if ((size_t)(end - s) > sizeof key)
                return -1;
            snprintf(key, sizeof key, "%.*s", (int)(end - s - 1), s + 1);
            if (demo_field(p, v, created, key, val, sizeof val) != 0)
                return -1;
            src = val;
            len = strlen(val);
        }
        if (o + len >= cap)
            return -1;
        memcpy(out + o, src, len);
        o += len;
        s = end != NULL ? end + 1 : s + 1;
    }
    out[o] = '\0';
    return 0;
}

/* ---- output ------------------------------------------------------------------------------- */

static void demo_section(const demo_ctx *c, const char *title)
{
    static const char rule[] = "================================================================"
                               "================================";

    printf("\n%s== %s %.*s%s\n\n", c->bold, title, (int)(DEMO_WIDTH - 4 - strlen(title)), rule,
           c->reset);
}

/* "R PSY" from {"confidentiality":"R","compartments":["PSY"]}. */
static void demo_labels(const char *json, char *out, size_t cap)
{
    cJSON *root = json != NULL ? cJSON_Parse(json) : NULL;
    const cJSON *conf = cJSON_GetObjectItemCaseSensitive(root, "confidentiality");
    const cJSON *it = NULL;
    size_t o = (size_t)snprintf(out, cap, "%s", cJSON_IsString(conf) ? conf->valuestring : "?");

    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(root, "compartments"))
    {
        if (cJSON_IsString(it) && o < cap)
            o += (size_t)snprintf(out + o, cap - o, " %s", it->valuestring);
    }
    cJSON_Delete(root);
}

static void demo_print_answer(const demo_ctx *c, const stw_answer *ans)
{
    for (size_t i = 0; i < ans->nresults; i++) {
        const stw_result *r = &ans->results[i];
        const char *text = r->text != NULL ? r->text : "";
        size_t cut = strlen(text) > DEMO_SNIPPET ? DEMO_SNIPPET : strlen(text);
        char pv[2 * STW_NAME_MAX + 2], labels[96];

        while (cut > 0 && ((unsigned char)text[cut] & 0xC0) == 0x80)
            cut--; /* never split a UTF-8 sequence */
        snprintf(pv, sizeof pv, "%s@%s", r->product, r->version);
        demo_labels(r->labels_json, labels, sizeof labels);
        printf("    %2zu  %.3f  %-31s %-26s %s\n                %s%.*s%s%s\n", r->rank, r->score,
               pv, r->chunk_id, labels, c->dim, (int)cut, text, text[cut] ? "..." : "", c->reset);
    }
    if (ans->nresults == 0)
        printf("    %s(nothing this caller may see matches)%s\n", c->dim, c->reset);
    printf("    %squery %s, policy v%" PRId64 ", %s%s\n\n", c->dim, ans->query_id,
           ans->policy_version, ans->complete ? "complete" : "incomplete", c->reset);
}

/* ---- 1. the store ------------------------------------------------------------------------- */

/* Removes `name` under parent_fd and everything below it, never following a symlink. */
static int demo_rmtree_at(int parent_fd, const char *name)
{
    const int fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    int rc = 0;

    if (fd < 0)
        return (errno == ENOTDIR || errno == ELOOP) ? unlinkat(parent_fd, name, 0) : -1;
    if (d == NULL) {
        close(fd);
        return -1;
    }
    for (const struct dirent *ent = readdir(d); ent != NULL && rc == 0; ent = readdir(d))
        if (strcmp(ent->d_name, ".") != 0 && strcmp(ent->d_name, "..") != 0)
            rc = demo_rmtree_at(dirfd(d), ent->d_name);
    closedir(d);
    return rc == 0 ? unlinkat(parent_fd, name, AT_REMOVEDIR) : rc;
}

/* Leaves the folder absent for stw_init: an earlier store is removed, an empty folder too;
 * anything else is refused and left untouched. Then signs in as admin. */
static stw_code demo_step_store(demo_ctx *c)
{
    char db[PATH_MAX], admin_key[STW_KEY_MAX] = "";
    struct stat st;
    int replaced = 0;
    stw_code rc = STW_OK;

    if ((size_t)snprintf(db, sizeof db, "%s/steward.db", c->arg_dir) >= sizeof db)
        return stw_errorf(&c->err, STW_INVALID, "invalid", "data folder path is too long");
    if (lstat(db, &st) == 0 && S_ISREG(st.st_mode)) {
        if (demo_rmtree_at(AT_FDCWD, c->arg_dir) != 0)
            return stw_errorf(&c->err, STW_STORE, "store", "cannot remove the old store %s: %s",
                              c->arg_dir, strerror(errno));
        replaced = 1;
    } else if (rmdir(c->arg_dir) != 0 && errno != ENOENT) { /* rmdir: only if empty */
        return stw_errorf(&c->err, STW_CONFLICT, "conflict",
                          "%s %s; refusing to touch it (choose another --data)", c->arg_dir,
                          errno == ENOTEMPTY || errno == EEXIST ? "is not empty and holds no store"
                          : errno == ENOTDIR                    ? "is not a folder"
                                                                : strerror(errno));
    }
    rc = stw_init(c->arg_dir, admin_key, &c->err);
    if (rc == STW_OK)
        rc = stw_open(c->arg_dir, NULL, &c->db, &c->err);
    if (rc == STW_OK)
        rc = stw_authenticate(c->db, admin_key, &c->admin, &c->err);
    memset(admin_key, 0, sizeof admin_key); /* the session lives on in c->admin */
    if (rc != STW_OK)
        return rc;
    if (realpath(c->arg_dir, c->dir) == NULL)
        snprintf(c->dir, sizeof c->dir, "%s", c->arg_dir);
    printf("  %s%s\n  signed in as 'admin' with the key from stw_init (held in memory only)\n\n",
           c->dir, replaced ? "   (replaced the previous demo store)" : "");
    return STW_OK;
}

/* ---- 2. products -------------------------------------------------------------------------- */

/* Generates template ti for patient pi at visit v into *it; *ch borrows from it. */
static int demo_item_fill(const demo_ctx *c, const demo_product_def *pd, size_t ti, size_t pi,
                          int v, demo_item *it, stw_chunk *ch)
{
    const demo_tmpl *t = &pd->tmpl[ti];
    const demo_patient *p = &demo_patients[pi];
    const int64_t created = c->visit_ms[v] + (int64_t)pi * 2 * 86400000 + (int64_t)ti * 2400000;
    const int deid = pd->deidentified;
    const char *num = p->id + strlen("patient-"); /* "0001" */

    stw_time_format(created, it->created);
    if (deid) /* a stable pseudonym: the cohort never carries patient ids */
        snprintf(it->subject, sizeof it->subject, "r%04x", (unsigned)(demo_hash(p->id) & 0xffffu));
    else
        snprintf(it->subject, sizeof it->subject, "%s", p->id);
    snprintf(it->doc, sizeof it->doc, "%s-%s-%c%d", t->doc, deid ? it->subject : num,
             deid ? 'm' : 'v', deid ? 3 * v : v);
    snprintf(it->record, sizeof it->record, "%s-%s-%d", pd->record_prefix, deid ? it->subject : num,
             v);
    snprintf(it->id, sizeof it->id, "%s#%s", it->doc, t->section);
    snprintf(it->conf, sizeof it->conf, "%.1s", t->labels);
    it->comp = t->labels[1] == ' ' ? t->labels + 2 : NULL;
    if (demo_expand(p, v, it->created, t->text, it->text, sizeof it->text) != 0)
        return -1;
    snprintf(it->prov, sizeof it->prov,
             "{\"source_system\":\"%s\",\"record_id\":\"%s\",\"document_id\":\"%s\","
             "\"section\":\"%s\",\"subject\":\"%s\",\"created_at\":\"%s\"}",
             pd->source_system, it->record, it->doc, t->section, it->subject, it->created);
    demo_embed(it->text, it->vec);
    *ch = (stw_chunk){.id = it->id,
                      .text = it->text,
                      .vector = it->vec,
                      .dim = DEMO_DIM,
                      .confidentiality = stw_conf_parse(it->conf),
                      .ncompartments = it->comp != NULL,
                      .compartments = &it->comp,
                      .source_system = pd->source_system,
                      .record_id = it->record,
                      .document_id = it->doc,
                      .section = t->section,
                      .subject = it->subject,
                      .created_ms = created,
                      .provenance_json = it->prov,
                      .metadata_json = t->meta};
    return 0;
}

/* Creates a draft, adds visits 1..last_visit in one atomic batch, publishes it. */
static stw_code demo_load_version(demo_ctx *c, const demo_product_def *pd, const char *version,
                                  int last_visit)
{
    const size_t cap = pd->ntmpl * N_OF(demo_patients) * DEMO_NVISITS;
    demo_item *items = calloc(cap, sizeof *items);
    stw_chunk *chunks = calloc(cap, sizeof *chunks);
    stw_version_info info;
    size_t n = 0, accepted = 0, unchanged = 0;
    stw_code rc = STW_OK;

    if (items == NULL || chunks == NULL) {
        rc = stw_errorf(&c->err, STW_NOMEM, "nomem", "out of memory for %zu chunks", cap);
        goto done;
    }
    for (int v = 1; v <= last_visit; v++) {
        for (size_t pi = 0; pi < N_OF(demo_patients); pi++) {
            for (size_t ti = 0; ti < pd->ntmpl; ti++) {
                const demo_tmpl *t = &pd->tmpl[ti];
                const unsigned cond = demo_patients[pi].cond;
                if ((t->need != 0 && (cond & t->need) == 0) || (cond & t->excl) != 0 ||
                    (t->visit != 0 && t->visit != v))
                    continue;
                if (demo_item_fill(c, pd, ti, pi, v, &items[n], &chunks[n]) != 0) {
                    rc = stw_errorf(&c->err, STW_INTERNAL, "internal",
                                    "demo template %s#%s does not expand", t->doc, t->section);
                    goto done;
                }
                n++;
            }
        }
    }
    rc = stw_version_create(c->db, &c->admin, pd->name, version, &info, &c->err);
    if (rc != STW_OK)
        goto done;
    rc = stw_chunks_add(c->db, &c->admin, pd->name, version, chunks, n, &accepted, &unchanged,
                        &c->err);
    if (rc != STW_OK)
        goto done;
    rc = stw_version_publish(c->db, &c->admin, pd->name, version, &info, &c->err);
    if (rc != STW_OK)
        goto done;
    printf("  %-21s %-9s %-11s %6zu  %-10s %.23s...\n", pd->name, pd->domain, version, info.chunks,
           stw_state_name(info.state), info.content_hash);
done:
    free(items);
    free(chunks);
    return rc;
}

static stw_code demo_step_products(demo_ctx *c)
{
    static const char *const comps[] = {"PSY", "HIV", "SUD"}, *const prov[] = {"source_system",
                                                                               "document_id"};
    stw_code rc = STW_OK;

    printf("  %s%-21s %-9s %-11s %6s  %-10s %s%s\n", c->bold, "product", "domain", "version",
           "chunks", "state", "content hash", c->reset);
    for (size_t i = 0; i < N_OF(demo_products) && rc == STW_OK; i++) {
        const demo_product_def *pd = &demo_products[i];
        char desc[256], terms[96];
        stw_product p = {.description = desc, .terms = terms, .deidentified = pd->deidentified};
        stw_contract *k = &p.contract;
        snprintf(p.name, sizeof p.name, "%s", pd->name);
        snprintf(p.domain, sizeof p.domain, "%s", pd->domain);
        snprintf(p.owner, sizeof p.owner, "%s", pd->owner);
        snprintf(desc, sizeof desc, "%s", pd->description);
        snprintf(terms, sizeof terms, "%s",
                 pd->deidentified ? "IRB-approved research only; no re-identification"
                                  : "Treatment and operations; minimum necessary");
        snprintf(k->embedding_model, sizeof k->embedding_model, "demo-hash-256");
        k->dimension = DEMO_DIM;
        k->metric = STW_METRIC_COSINE;
        for (; k->ncompartments < N_OF(comps); k->ncompartments++)
            snprintf(k->compartments[k->ncompartments], STW_LABEL_MAX + 1, "%s",
                     comps[k->ncompartments]);
        for (; k->nprovenance_required < N_OF(prov); k->nprovenance_required++)
            snprintf(k->provenance_required[k->nprovenance_required], STW_LABEL_MAX + 1, "%s",
                     prov[k->nprovenance_required]);
        rc = stw_product_create(c->db, &c->admin, &p, &c->err);
    }
    for (size_t i = 0; i < N_OF(demo_versions) && rc == STW_OK; i++) {
        static const struct timespec pause = {0, 5000000}; /* keeps publish times apart */
        struct timespec now;
        rc = demo_load_version(c, &demo_products[demo_versions[i].product],
                               demo_versions[i].version, demo_versions[i].last_visit);
        if (rc == STW_OK && i == 0) { /* the moment an as_of query resolves to 2026-10-01 */
            nanosleep(&pause, NULL);
            clock_gettime(CLOCK_REALTIME, &now);
            c->between_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
            nanosleep(&pause, NULL);
        }
    }
    putchar('\n');
    return rc;
}

/* ---- 3. principals and grants ------------------------------------------------------------- */

static const stw_principal *demo_caller(const demo_ctx *c, const char *id)
{
    for (size_t i = 0; i < DEMO_NPRINCIPALS; i++)
        if (strcmp(c->callers[i].id, id) == 0)
            return &c->callers[i];
    return NULL;
}

/* Creates each principal, signs it in with its own new key, then creates and prints its
 * grants. Only rag-clinician's key is kept, for the curl example. */
static stw_code demo_step_policy(demo_ctx *c)
{
    stw_code rc = STW_OK;
    int64_t pv = 0;

    printf("  %s%-15s %-9s %-31s %-13s %-6s %s%s\n", c->bold, "principal", "role", "grant on",
           "purposes", "clear.", "compartments", c->reset);
    for (size_t i = 0; i < DEMO_NPRINCIPALS && rc == STW_OK; i++) {
        stw_principal p = {.roles = demo_principals[i].roles};
        char key[STW_KEY_MAX];
        int shown = 0;
        snprintf(p.id, sizeof p.id, "%s", demo_principals[i].id);
        rc = stw_principal_create(c->db, &c->admin, &p, key, &c->err);
        if (rc == STW_OK)
            rc = stw_authenticate(c->db, key, &c->callers[i], &c->err);
        if (rc == STW_OK && i == 0) /* rag-clinician */
            memcpy(c->clinician_key, key, sizeof key);
        memset(key, 0, sizeof key);
        for (size_t j = 0; j < N_OF(demo_grants) && rc == STW_OK; j++) {
            stw_grant g = {.purposes = demo_grants[j].purposes,
                           .clearance = demo_grants[j].clearance,
                           .ncompartments = demo_grants[j].comp != NULL};
            char purposes[64] = "";
            if (strcmp(demo_grants[j].principal, p.id) != 0)
                continue;
            snprintf(g.principal, sizeof g.principal, "%s", p.id);
            snprintf(g.product, sizeof g.product, "%s", demo_grants[j].product);
            snprintf(g.domain, sizeof g.domain, "%s", demo_grants[j].domain);
            if (g.ncompartments)
                snprintf(g.compartments[0], sizeof g.compartments[0], "%s", demo_grants[j].comp);
            rc = stw_grant_create(c->db, &c->admin, &g, &pv, &c->err);
            if (rc != STW_OK)
                break;
            for (int b = 0; b < STW_PURPOSE_COUNT; b++)
                if (g.purposes & (1u << b))
                    snprintf(purposes + strlen(purposes), sizeof purposes - strlen(purposes),
                             "%s%s", purposes[0] ? " " : "", stw_purpose_name(b));
            printf("  %-15s %-9s %-7s %-23s %-13s %-6s %s\n", shown ? "" : p.id,
                   shown ? "" : stw_role_name(p.roles), g.product[0] ? "product" : "domain",
                   g.product[0] ? g.product : g.domain, purposes, stw_conf_name(g.clearance),
                   g.ncompartments ? g.compartments[0] : "-");
            shown = 1;
        }
        if (rc == STW_OK && !shown)
            printf("  %-15s %-9s %s(no grants: reads the audit trail and the policy)%s\n", p.id,
                   stw_role_name(p.roles), c->dim, c->reset);
    }
    if (rc == STW_OK)
        printf("\n  policy v%" PRId64 "; each caller signed in with its own new API key\n\n", pv);
    return rc;
}

/* ---- 4-6. queries ------------------------------------------------------------------------- */

/* Asks `question` as a->caller; a 403 is shown as the refusal it is, other errors fail. */
static stw_code demo_query(demo_ctx *c, const char *question, const demo_ask *a, size_t k,
                           char *qid_out)
{
    const stw_principal *who = demo_caller(c, a->caller);
    float vec[DEMO_DIM];
    char buf[256], filter_json[128] = "";
    stw_product_ref refs[DEMO_MAX_REFS];
    stw_query q = {.vector = vec, .dim = DEMO_DIM, .k = k, .include = STW_INC_ALL};
    const int64_t as_of = a->as_of ? c->between_ms : STW_TIME_NONE;
    stw_answer *ans = NULL;
    stw_code rc;

    printf("  %s%-14s %-6s%s  on ", c->bold, a->caller, a->purpose, c->reset);
    for (const char *s = a->products; *s != '\0'; s++)
        fputs(*s == ' ' ? ", " : (const char[]){*s, '\0'}, stdout);
    if (a->as_of) {
        char at[32];
        stw_time_format(c->between_ms, at);
        printf(" as of %s (between its two publishes)", at);
    }
    printf("%s%s\n", a->subject != NULL ? "   filter: subject " : "", a->subject ? a->subject : "");
    if (who == NULL)
        return stw_errorf(&c->err, STW_INTERNAL, "internal", "no demo caller %s", a->caller);
    snprintf(buf, sizeof buf, "%s", a->products);
    for (char *tok = buf; tok != NULL && q.nproducts < DEMO_MAX_REFS;) {
        char *sp = strchr(tok, ' ');
        if (sp != NULL)
            *sp = '\0';
        char *at = strchr(tok, '@');
        if (at != NULL)
            *at = '\0';
        refs[q.nproducts++] = (stw_product_ref){tok, at != NULL ? at + 1 : NULL, as_of};
        tok = sp != NULL ? sp + 1 : NULL;
    }
    if (a->subject != NULL)
        snprintf(filter_json, sizeof filter_json, "{\"subject\":\"%s\"}", a->subject);
    demo_embed(question, vec);
    q.purpose = stw_purpose_parse(a->purpose);
    q.products = refs;
    q.filter = (stw_filter){
        .subject = a->subject, .created_from = STW_TIME_NONE, .created_to = STW_TIME_NONE};
    q.filter_json = a->subject != NULL ? filter_json : NULL;
    rc = stw_query_run(c->db, who, &q, &ans, &c->err);
    if (rc == STW_FORBIDDEN) {
        printf("    %srefused: 403 %s: %s%s\n\n", c->red, c->err.name, c->err.message, c->reset);
        return STW_OK;
    }
    if (rc != STW_OK)
        return rc;
    demo_print_answer(c, ans);
    if (qid_out != NULL)
        snprintf(qid_out, STW_QUERY_ID_MAX, "%s", ans->query_id);
    stw_answer_free(ans);
    return STW_OK;
}

static stw_code demo_step_questions(demo_ctx *c)
{
    stw_code rc = STW_OK;

    for (size_t i = 0; i < N_OF(demo_questions) && rc == STW_OK; i++) {
        printf("%sQ%zu  \"%s\"%s\n\n", c->bold, i + 1, demo_questions[i].text, c->reset);
        for (size_t j = 0; j < N_OF(demo_questions[i].asks) && rc == STW_OK; j++)
            if (demo_questions[i].asks[j].caller != NULL)
                rc = demo_query(c, demo_questions[i].text, &demo_questions[i].asks[j], 5, NULL);
    }
    return rc;
}

static stw_code demo_step_versions(demo_ctx *c)
{
    stw_code rc = STW_OK;

    printf(
        "  lab-results has two published versions: 2026-10-01 (September visits only) and\n"
        "  2026-11-01 (adds October). A query names the latest, pins one, or asks as of a time.\n\n"
        "%sQ4  \"%s\"%s\n\n",
        c->bold, demo_questions[3].text, c->reset);
    for (size_t i = 0; i < N_OF(demo_pinned) && rc == STW_OK; i++)
        rc = demo_query(c, demo_questions[3].text, &demo_pinned[i], 3,
                        i == 1 ? c->receipt_qid : NULL);
    return rc;
}

static stw_code demo_step_consent(demo_ctx *c)
{
    stw_suppression s = {.kind = STW_SUPP_SUBJECT};
    int64_t pv = 0;
    stw_code rc;

    printf("%sQ1  \"%s\"%s, narrowed by the caller's own filter\n\n", c->bold,
           demo_questions[0].text, c->reset);
    rc = demo_query(c, demo_questions[0].text, &demo_consent, 3, NULL);
    if (rc != STW_OK)
        return rc;
    snprintf(s.product, sizeof s.product, "clinical-notes");
    snprintf(s.value, sizeof s.value, "%s", demo_consent.subject);
    snprintf(s.reason, sizeof s.reason, "consent withdrawn");
    rc = stw_suppression_create(c->db, &c->admin, &s, &pv, &c->err);
    if (rc != STW_OK)
        return rc;
    printf("  %s%s withdraws consent%s: suppression %s on clinical-notes (every version), "
           "policy v%" PRId64 "\n\n",
           c->bold, demo_consent.subject, c->reset, s.id, pv);
    return demo_query(c, demo_questions[0].text, &demo_consent, 3, NULL);
}

/* ---- 7-8. governance and the way out ------------------------------------------------------ */

static stw_code demo_step_audit(demo_ctx *c)
{
    const stw_principal *auditor = demo_caller(c, "auditor");
    char *json = NULL, *pretty = NULL, *verify = NULL;
    cJSON *root = NULL, *vroot = NULL;
    stw_code rc;

    printf("  The receipt of the pinned query (section 5), read back by 'auditor':\n\n  ");
    rc = stw_audit_query_get(c->db, auditor, c->receipt_qid, &json, &c->err);
    if (rc != STW_OK)
        goto done;
    root = cJSON_Parse(json);
    pretty = root != NULL ? cJSON_Print(root) : NULL;
    for (const char *t = pretty != NULL ? pretty : json, *s = t; *s != '\0'; s++)
        fputs(*s != '\t' ? (*s == '\n' ? "\n  " : (const char[]){*s, '\0'})
                         : (s > t && s[-1] == ':' ? " " : "  "), /* cJSON: "key":<TAB>value */
              stdout);
    rc = stw_audit_verify(c->db, auditor, &verify, &c->err);
    if (rc != STW_OK)
        goto done;
    vroot = cJSON_Parse(verify);
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(vroot, "events");
    const cJSON *head = cJSON_GetObjectItemCaseSensitive(vroot, "head");
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(vroot, "ok")) && cJSON_IsNumber(n) &&
        cJSON_IsString(head))
        printf("\n\n  audit chain verified: %.0f events, head %s\n\n", n->valuedouble,
               head->valuestring);
    else
        printf("\n\n  audit chain: %s\n\n", verify);
done:
    free(json);
    free(verify);
    cJSON_free(pretty);
    cJSON_Delete(root);
    cJSON_Delete(vroot);
    return rc;
}

/* Writes a ready request body for Q1 into the demo folder; prints how to serve and query. */
static stw_code demo_step_http(demo_ctx *c)
{
    char path[PATH_MAX + 32];
    float vec[DEMO_DIM];
    FILE *f = NULL;
    int bad;

    snprintf(path, sizeof path, "%s/demo-query.json", c->dir);
    demo_embed(demo_questions[0].text, vec);
    f = fopen(path, "w");
    if (f == NULL)
        return stw_errorf(&c->err, STW_INVALID, "invalid", "cannot create %s", path);
    fputs("{\"k\":5,\"purpose\":\"TREAT\",\"products\":[\"clinical-notes\",\"lab-results\"],"
          "\"vector\":[",
          f);
    for (size_t i = 0; i < DEMO_DIM; i++)
        fprintf(f, "%s%.6f", i > 0 ? "," : "", (double)vec[i]);
    fputs("]}\n", f);
    bad = ferror(f) != 0;
    if (fclose(f) != 0 || bad)
        return stw_errorf(&c->err, STW_INVALID, "invalid", "cannot write %s", path);
    printf("  Serve this folder, then ask Q1 over HTTP as rag-clinician:\n\n"
           "    %s serve --data %s --listen 127.0.0.1:8080\n\n"
           "    curl -s http://127.0.0.1:8080/v1/query \\\n"
           "      -H 'Authorization: Bearer %s' \\\n"
           "      -H 'Content-Type: application/json' -d @%s\n\n"
           "  demo-query.json holds the demo-hash-256 vector of \"%s\",\n"
           "  k 5, purpose TREAT, products clinical-notes and lab-results.\n\n"
           "  That key is rag-clinician's, a consumer in this local sandbox. The admin key from\n"
           "  stw_init was used in memory to load the demo and then wiped: it is not printed, not\n"
           "  in any file, and steward.db keeps only its hash. For an admin key of your own:\n"
           "    %s init --data NEW_FOLDER\n",
           c->exe, c->dir, c->clinician_key, path, demo_questions[0].text, c->exe);
    return STW_OK;
}

/* ---- entry point -------------------------------------------------------------------------- */

static const struct {
    const char *title;
    stw_code (*run)(demo_ctx *c);
} demo_steps[] = {
    {"1. A fresh store", demo_step_store},
    {"2. Data products (contract: demo-hash-256, 256-d, cosine; PSY HIV SUD)", demo_step_products},
    {"3. Callers and their grants", demo_step_policy},
    {"4. Same question, different callers", demo_step_questions},
    {"5. Version rules: latest, pinned, as of a date", demo_step_versions},
    {"6. Consent withdrawal (a suppression)", demo_step_consent},
    {"7. Audit receipt", demo_step_audit},
    {"8. Try it over HTTP", demo_step_http},
};

int demo_main(int argc, char **argv)
{
    static const char usage[] = "usage: steward demo [--data DIR]  (default ./" DEMO_DEFAULT_DIR
                                "; an earlier demo store there is replaced)\n";
    static const char *const visit_at[] = {"2026-09-08T08:30:00Z", "2026-10-13T08:30:00Z"};
    demo_ctx *c = calloc(1, sizeof *c); /* ~20 KiB: kept off the stack */
    struct timespec t0, t1;
    stw_code rc = STW_OK;
    int color;

    if (c == NULL) {
        fputs("steward demo: out of memory\n", stderr);
        return 1;
    }
    c->arg_dir = DEMO_DEFAULT_DIR;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--data") == 0 && i + 1 < argc) {
            c->arg_dir = argv[++i];
        } else if (strncmp(argv[i], "--data=", 7) == 0) {
            c->arg_dir = argv[i] + 7;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(usage, stdout);
            free(c);
            return 0;
        } else if (i != 1 || strcmp(argv[i], "demo") != 0) {
            fprintf(stderr, "steward demo: unexpected or incomplete argument '%s'\n%s", argv[i],
                    usage);
            free(c);
            return 2;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    color = isatty(STDOUT_FILENO) && getenv("NO_COLOR") == NULL;
    c->bold = color ? "\033[1m" : "";
    c->dim = color ? "\033[2m" : "";
    c->red = color ? "\033[31m" : "";
    c->reset = color ? "\033[0m" : "";
    if (readlink("/proc/self/exe", c->exe, sizeof c->exe - 1) <= 0)
        snprintf(c->exe, sizeof c->exe, "steward");
    for (int v = 1; v <= DEMO_NVISITS && rc == STW_OK; v++)
        if (stw_time_parse(visit_at[v - 1], &c->visit_ms[v]) != 0)
            rc = stw_errorf(&c->err, STW_INTERNAL, "internal", "bad time %s", visit_at[v - 1]);
    for (size_t i = 0; i < N_OF(demo_steps) && rc == STW_OK; i++) {
        demo_section(c, demo_steps[i].title);
        rc = demo_steps[i].run(c);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (rc == STW_OK)
        printf("\n  demo finished in %.2f s\n",
               (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    fflush(stdout);
    if (rc != STW_OK)
        fprintf(stderr, "steward demo: %s: %s\n",
                c->err.name[0] != '\0' ? c->err.name : stw_code_name(rc), c->err.message);
    stw_close(c->db);
    memset(c->clinician_key, 0, sizeof c->clinician_key);
    free(c);
    return rc == STW_OK ? 0 : 1;
}
