/*
 * share.h - cloud film share links: instead of printed film, the patient
 * leaves with a report whose QR code holds a link; whoever scans it sees
 * the report and the images after answering a second factor (the patient's
 * birth date or the last four digits of their phone). From a verified
 * session the patient may make a new link for another doctor.
 *
 * The prefix is film_share_, not share_: src/ingest/share.h (SMB shares)
 * has share_ already.
 *
 * Links live in the index database (table share_link, migrated through
 * film_schema_version). A link is found by the BLAKE2b-256 hash of its
 * token (credential_token_hash); the token itself is stored nowhere and is
 * handed out once, by film_share_create or film_share_child. The expected
 * answer is kept as a keyed BLAKE2b-256 (a server secret from key_path and
 * a salt of the link) and compared in constant time: the answers are
 * short, so a slow hash would not save them if the table leaked, and the
 * throttling in Redis is what protects them online:
 *
 *   wrong answers (per link, and per peer, counted over SHARE_BLOCK_S)
 *     < SHARE_DELAY_AFTER                   another try at once
 *     >= SHARE_DELAY_AFTER                  a wait before the next try,
 *                                           SHARE_DELAY_BASE_MS doubling,
 *                                           at most SHARE_DELAY_MAX_MS
 *     >= SHARE_BLOCK_AFTER                  blocked for SHARE_BLOCK_S
 *
 * A right answer opens a share session: a token ("fs_" + 256 bits) whose
 * hash is kept in Redis for SHARE_SESSION_S (never past the link's expiry).
 * Every later request of the patient's page carries it
 * (film_share_session_check), which reads the link again, so a revocation
 * or an expiry takes effect at once.
 *
 * Unknown, forged, expired and revoked tokens all give one CP_ERR_NOT_FOUND
 * with the same detail, so the answer tells nothing about which it was.
 *
 * Every open, every answer (right or wrong) and every link made or revoked
 * writes an audit record (audit.h) with the actor "share:<link id>" and
 * the study (or, for a patient link without one, "share_link" and the id)
 * as the object; never the token. Event types, with their ATNA events:
 *   share_link_created    AUDIT_EXPORT, create (user_id: the member of staff)
 *   share_link_opened     AUDIT_INSTANCES_ACCESSED, read
 *   share_link_verified   AUDIT_USER_AUTHENTICATION, execute, success
 *   share_link_refused    the same, minor failure (a wrong answer)
 *   share_link_blocked    the same, minor failure (a try refused by a wait
 *                         or a block; the answer was not looked at)
 *   share_link_child      AUDIT_INSTANCES_TRANSFERRED, create (actor: the
 *                         parent; the child's id in the detail)
 *   share_link_revoked    AUDIT_EXPORT, delete
 *
 * Scopes, narrowest first (a child is never wider than its parent):
 *   study               the one study named by the link
 *   patient_with_prior  the study named and the patient's other studies
 *                       (priors, for comparison)
 *   patient             every study of the patient (issuer, patient id)
 * Which studies those are is the caller's to find in the index; the link
 * only says which the patient key and study are. deidentify asks the
 * caller to show the images and report without the patient's identity.
 *
 * A film_share_store is safe to use from several threads at once.
 */
#ifndef CP_FILM_SHARE_H
#define CP_FILM_SHARE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/audit.h"
#include "core/limits.h"
#include "core/status.h"
#include "kv/kv.h"

typedef struct film_share_store film_share_store;

/* Token prefixes; a token is the prefix and 43 base64url characters. */
#define FILM_SHARE_TOKEN_PREFIX "cf_"
#define FILM_SHARE_SESSION_PREFIX "fs_"

/* Bytes of a link or session token with its NUL. */
#define FILM_SHARE_TOKEN_SIZE 48

typedef enum film_share_scope {
    FILM_SHARE_SCOPE_STUDY = 1,
    FILM_SHARE_SCOPE_PATIENT_WITH_PRIOR = 2,
    FILM_SHARE_SCOPE_PATIENT = 3,
} film_share_scope;

typedef enum film_share_factor {
    FILM_SHARE_FACTOR_BIRTH_DATE = 1,        /* answer: YYYYMMDD, "YYYY-MM-DD" or "YYYY/MM/DD" */
    FILM_SHARE_FACTOR_PHONE_LAST4 = 2,       /* answer: the last four digits */
} film_share_factor;

/* "study", "patient_with_prior", "patient"; "birth_date", "phone_last4"; and back (0: unknown). */
const char *film_share_scope_name(film_share_scope s);
film_share_scope film_share_scope_parse(const char *name);
const char *film_share_factor_name(film_share_factor f);
film_share_factor film_share_factor_parse(const char *name);

typedef struct film_share_link {
    int64_t id;
    film_share_scope scope;
    char study_uid[INDEX_UID_MAX + 1];  /* "" only for a patient link without a study */
    char issuer[INDEX_LO_MAX + 1];      /* the patient key */
    char patient_id[INDEX_LO_MAX + 1];
    int64_t institution_id;             /* whose data it is */
    int64_t created_by;                 /* a user id; 0: the patient (a child link) */
    int64_t parent_id;                  /* the link a child was made from; 0: none */
    int64_t created_us;
    int64_t expires_us;
    int64_t revoked_us;                 /* 0: not revoked */
    bool deidentify;
    film_share_factor factor;
    int64_t views;                      /* times opened */
} film_share_link;

typedef struct film_share_config {
    const char *db_path;                /* the index database */
    kv *kv;                             /* throttles and share sessions */
    audit_log *audit;                   /* not owned */
    const char *key_path;               /* the answers' secret; created (0600) when absent */
    int64_t (*now_us)(void);            /* NULL: the real clock */
    /*
     * The first wait after SHARE_DELAY_AFTER wrong answers, in ms; 0:
     * SHARE_DELAY_BASE_MS. Tests shorten it; Redis keeps the waits in its
     * own (real) time.
     */
    unsigned delay_base_ms;
} film_share_config;

cp_status film_share_store_open(const film_share_config *cfg, film_share_store **out,
                                cp_error *err);
void film_share_store_close(film_share_store *s);

/* What a member of staff (or the release of a report) asks for. */
typedef struct film_share_request {
    film_share_scope scope;
    const char *study_uid;              /* required unless scope is patient */
    const char *issuer;
    const char *patient_id;             /* required */
    int64_t institution_id;
    int64_t created_by;                 /* the user; 0 for cloudpacs itself */
    int64_t expires_us;                 /* 0: now + SHARE_TTL_DEFAULT_S */
    bool deidentify;
    film_share_factor factor;
    /*
     * The answer expected: the patient's birth date (from the index row) or
     * their phone number (its last four digits are kept). Never stored.
     */
    const char *factor_answer;
    const char *peer;                   /* for the audit record; may be NULL */
} film_share_request;

/*
 * Makes a link; token (FILM_SHARE_TOKEN_SIZE bytes) gets its token, the only
 * time it exists outside the QR code, and *out (may be NULL) the link.
 * CP_ERR_INVALID for a missing field, an answer that is not a date or has
 * fewer than four digits, or an expiry in the past or beyond
 * SHARE_TTL_MAX_S.
 */
cp_status film_share_create(film_share_store *s, const film_share_request *req,
                            film_share_link *out, char *token, cp_error *err);

/*
 * The link of a token (the QR code was scanned): counts a view and audits
 * it. CP_ERR_NOT_FOUND for an unknown, expired, revoked or forged token
 * alike, and for a child whose parent was revoked. Nothing is shown yet:
 * the page asks for the factor (link->factor says which).
 */
cp_status film_share_open(film_share_store *s, const char *token, const char *peer,
                          film_share_link *out, cp_error *err);

typedef enum film_share_verdict {
    FILM_SHARE_VERIFIED = 0,                 /* session holds a share-session token */
    FILM_SHARE_WRONG = 1,                    /* a wrong answer, counted */
    FILM_SHARE_WAIT = 2,                     /* too soon after wrong answers: retry_after_s */
    FILM_SHARE_BLOCKED = 3,                  /* blocked: retry_after_s */
} film_share_verdict;

typedef struct film_share_result {
    film_share_verdict verdict;
    unsigned retry_after_s;             /* for WAIT and BLOCKED */
    unsigned failures;                  /* wrong answers counted so far (link or peer) */
    char session[FILM_SHARE_TOKEN_SIZE];     /* for VERIFIED */
    int64_t session_expires_us;
    film_share_link link;                    /* for VERIFIED */
} film_share_result;

/*
 * Checks the answer to a link's factor. CP_OK with the verdict in *res;
 * CP_ERR_NOT_FOUND as film_share_open; CP_ERR_UNAVAILABLE when Redis (and so the
 * throttle) is away: no answer is checked without it. While a wait or a
 * block holds, the answer is not looked at (and not counted).
 */
cp_status film_share_verify(film_share_store *s, const char *token, const char *answer,
                            const char *peer, film_share_result *res, cp_error *err);

/*
 * Added for the kiosk (api_kiosk.c), which finds a link by the study's
 * accession number instead of a token: film_share_verify for the link of
 * that id, with the same throttle, audit and session. An unknown, expired
 * or revoked id (or 0: no link was found) is a wrong answer counted against
 * the peer alone (verdict FILM_SHARE_WRONG, no audit record: there is no
 * link to name), so that guessing accession numbers is throttled too.
 */
cp_status film_share_verify_id(film_share_store *s, int64_t link_id, const char *answer,
                               const char *peer, film_share_result *res, cp_error *err);

/*
 * The link of a share session (every request of the patient's page).
 * CP_ERR_NOT_FOUND when the session is unknown or over, or its link is no
 * longer valid.
 */
cp_status film_share_session_check(film_share_store *s, const char *session, film_share_link *out,
                                   cp_error *err);

/* Ends a share session (the patient leaves). Unknown sessions are fine. */
cp_status film_share_session_end(film_share_store *s, const char *session, cp_error *err);

/* What a patient asks for when sharing on with another doctor. */
typedef struct film_share_child_request {
    film_share_scope scope;                  /* no wider than the parent's */
    int64_t expires_us;                 /* 0: SHARE_CHILD_TTL_DEFAULT_S; cut to the parent's */
    bool deidentify;                    /* a de-identified parent keeps its children so */
    film_share_factor factor;                /* 0: the parent's factor and answer */
    const char *factor_answer;          /* with factor: the answer the doctor will give */
    const char *peer;
} film_share_child_request;

/*
 * A patient, in a verified share session, makes a link for another doctor:
 * the child carries the parent's patient, study and institution,
 * created_by 0 and parent_id. token (FILM_SHARE_TOKEN_SIZE bytes) gets its
 * token. Only a link made by staff can have children (a doctor given a
 * child cannot share on): CP_ERR_FORBIDDEN otherwise, and for a scope wider
 * than the parent's or a study scope when the parent names no study.
 * CP_ERR_NOT_FOUND when the session is not valid.
 */
cp_status film_share_child(film_share_store *s, const char *session,
                           const film_share_child_request *req, film_share_link *out, char *token,
                           cp_error *err);

/*
 * Revokes a link and its children. actor_id: the user (0: the patient, see
 * film_share_revoke_child). CP_ERR_NOT_FOUND for an unknown id; revoking twice
 * is fine.
 */
cp_status film_share_revoke(film_share_store *s, int64_t link_id, int64_t actor_id,
                            const char *peer, cp_error *err);

/*
 * The patient revokes a child of their link from a verified session.
 * CP_ERR_NOT_FOUND when child_id is not a child of the session's link.
 */
cp_status film_share_revoke_child(film_share_store *s, const char *session, int64_t child_id,
                                  cp_error *err);

/* A link by id (for staff pages); CP_ERR_NOT_FOUND when unknown. Revoked and expired too. */
cp_status film_share_get(film_share_store *s, int64_t link_id, film_share_link *out, cp_error *err);

typedef struct film_share_filter {
    const char *issuer;                 /* with patient_id: a patient's links */
    const char *patient_id;             /* NULL: any */
    const char *study_uid;              /* NULL: any */
    int64_t parent_id;                  /* 0: any; else the children of this link */
    bool valid_only;                    /* leave out revoked and expired links */
    size_t limit;                       /* 0 or over SHARE_LIST_MAX: SHARE_LIST_MAX */
} film_share_filter;

typedef cp_status (*film_share_link_fn)(void *ctx, const film_share_link *link);

/*
 * Links that match, newest first; CP_ERR_INVALID without patient, study or
 * parent. fn must not call back into the store; CP_ERR_STOPPED from fn ends
 * the walk with CP_OK.
 */
cp_status film_share_list(film_share_store *s, const film_share_filter *f, film_share_link_fn fn,
                          void *ctx, cp_error *err);

/*
 * The URL a QR code carries: "<base_url>/film/<token>" (base_url without
 * its trailing slash, e.g. "https://pacs.example.org"). CP_ERR_LIMIT when it
 * does not fit in cap (SHARE_URL_MAX is enough).
 */
cp_status film_share_url(const char *base_url, const char *token, char *out, size_t cap);

/*
 * Added for de-identification (film/deident.h): the key of a link's
 * replacements (FILM_DEIDENT_KEY_BYTES = 32 bytes), a keyed BLAKE2b-256 of
 * the link's id under the server's secret (key_path), so that a link's new
 * UIDs stay the same across requests and restarts and differ from every
 * other link's. Every user of a link's de-identified files (the instance
 * route, the ZIP download) takes the key from here.
 */
#define FILM_SHARE_LINK_KEY_BYTES 32
void film_share_link_key(const film_share_store *s, const film_share_link *link,
                         uint8_t out[FILM_SHARE_LINK_KEY_BYTES]);

/*
 * Added for de-identification: the link's pseudonym, "ANON-" and 8 hex
 * digits of another keyed hash of its id, which becomes the Patient's Name
 * and Patient ID of its de-identified files.
 */
#define FILM_SHARE_PSEUDONYM_SIZE 16
void film_share_link_pseudonym(const film_share_store *s, const film_share_link *link,
                               char out[FILM_SHARE_PSEUDONYM_SIZE]);

#endif
