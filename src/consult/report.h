/*
 * report.h - diagnostic reports: templates, drafts under a lock, versions
 * that are never changed once written, review, release with a signature,
 * and the critical-finding notice the clinic must acknowledge.
 *
 * A report belongs to one order. Its author writes drafts (saved as they
 * type; each save replaces the draft, which is not a version); submitting
 * freezes the draft as a new version (status submitted). A reviewer of a
 * sufficient title approves it (status approved) or rejects it with a
 * reason (status rejected; the author writes again). The author may
 * approve their own report when the directory allows it (may_self_approve).
 * Release makes the approved version visible to the clinic and to the
 * patient's link, and signs it: Ed25519 (libsodium) over the canonical text
 * of the version (order, study, version, findings, impression, critical,
 * author, reviewer, times), with the service's key kept in
 * <data_dir>/report-signing.key; anyone can check it with the public key.
 *
 * Only one person edits a report at a time: a lock in Redis
 * (rlock:<order>, SET NX PX, renewed by each save) names its holder.
 */
#ifndef CP_CONSULT_REPORT_H
#define CP_CONSULT_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/directory.h"
#include "auth/policy.h"
#include "consult/order.h"
#include "core/buf.h"
#include "core/status.h"
#include "kv/kv.h"

typedef struct report_store report_store;

typedef enum report_status {
    REPORT_DRAFT = 1,
    REPORT_SUBMITTED = 2,
    REPORT_REJECTED = 3,
    REPORT_APPROVED = 4,
    REPORT_RELEASED = 5,
} report_status;

const char *report_status_name(report_status s);

/* One version (or the draft, version 0). Text is UTF-8. */
typedef struct report_version {
    int64_t order_id;
    int version;                        /* 1, 2, ...; 0: the draft */
    report_status status;
    int64_t author_id;
    int64_t reviewer_id;                /* 0 until reviewed */
    int64_t written_us;
    int64_t reviewed_us;
    int64_t released_us;
    bool critical;                      /* a critical finding: the clinic must acknowledge */
    int64_t critical_ack_by;            /* 0 until acknowledged */
    int64_t critical_ack_us;
    char reason[ORDER_REASON_MAX + 1];  /* a rejection's reason */
    char *findings;                     /* owned; freed by report_version_clear */
    char *impression;
    char signature[128];                /* base64 Ed25519 signature once released, else "" */
} report_version;

void report_version_clear(report_version *v);

typedef struct report_template {
    int64_t id;
    char modality[INDEX_CS_MAX + 1];    /* "" any */
    char body_part[INDEX_CS_MAX + 1];   /* "" any */
    char name[DIRECTORY_NAME_MAX + 1];
    char *findings;                     /* owned */
    char *impression;
} report_template;

typedef struct report_config {
    order_store *orders;                /* not owned; the order moves with its report */
    kv *kv;
    const char *db_path;                /* the index database */
    const char *key_path;               /* the signing key; created (0600) when absent */
    int64_t (*now_us)(void);            /* NULL: the real clock */
    unsigned lock_s;                    /* the edit lock's life; 0: 120 */
    int min_reviewer_title;             /* directory_user.title; 0: 2 (attending) */
} report_config;

cp_status report_store_open(const report_config *cfg, report_store **out, cp_error *err);
void report_store_close(report_store *s);

/* Templates (for the editor). */
cp_status report_template_put(report_store *s, report_template *t, cp_error *err);
typedef cp_status (*report_template_fn)(void *ctx, const report_template *t);
cp_status report_template_list(report_store *s, const char *modality, const char *body_part,
                               report_template_fn fn, void *ctx, cp_error *err);

/*
 * Takes or renews the edit lock for the principal's session. CP_ERR_EXISTS
 * (with the holder's user id in *holder) when somebody else holds it.
 */
cp_status report_lock(report_store *s, const principal *p, int64_t order_id, int64_t *holder,
                      cp_error *err);
cp_status report_unlock(report_store *s, const principal *p, int64_t order_id, cp_error *err);

/*
 * Saves the draft (the author holding the claim and the lock): CP_ERR_FORBIDDEN
 * when p is not the order's doctor, CP_ERR_EXISTS when another holds the lock,
 * CP_ERR_INVALID when the order is not claimed or returned.
 */
cp_status report_save_draft(report_store *s, const principal *p, int64_t order_id,
                            const char *findings, const char *impression, bool critical,
                            cp_error *err);

/*
 * Freezes the draft as a new version and moves the order to reported (or,
 * for an author who may self-approve and asks to, straight to approved).
 * *version_out (may be NULL) gets the version number.
 */
cp_status report_submit(report_store *s, const principal *p, int64_t order_id, bool self_approve,
                        int *version_out, cp_error *err);

/* A reviewer approves, or rejects with a reason (the order goes back to its author). */
cp_status report_review(report_store *s, const principal *reviewer, int64_t order_id,
                        bool approve, const char *reason, cp_error *err);

/*
 * Releases the approved version: signs it, stamps it, moves the order to
 * released. Done by cloudpacs right after approval (the caller decides).
 */
cp_status report_release(report_store *s, int64_t order_id, int64_t actor_id, cp_error *err);

/* The clinic acknowledges a critical finding. */
cp_status report_ack_critical(report_store *s, const principal *p, int64_t order_id,
                              cp_error *err);

/* The draft (version 0) or a version; the newest when version < 0. */
cp_status report_get(report_store *s, int64_t order_id, int version, report_version *out,
                     cp_error *err);

typedef cp_status (*report_version_fn)(void *ctx, const report_version *v);
cp_status report_versions(report_store *s, int64_t order_id, report_version_fn fn, void *ctx,
                          cp_error *err);

/*
 * The canonical text a released version's signature covers, appended to out.
 *
 * Added: the format. UTF-8, one "key: value" line per field, each line
 * ending with a single LF, in exactly this order:
 *
 *   cloudpacs-report: 1         (the format's version)
 *   order: <order id>
 *   study: <Study Instance UID>
 *   accession: <text>
 *   issuer: <text>              (issuer of patient id)
 *   patient: <text>             (patient id)
 *   requesting: <institution id>
 *   reading: <institution id>
 *   version: <n>
 *   author: <user id>
 *   reviewer: <user id>
 *   written: <µs since 1970 UTC>
 *   reviewed: <µs>
 *   released: <µs>
 *   critical: yes | no
 *   findings: <text>
 *   impression: <text>
 *
 * Numbers are decimal without padding. In a text value, backslash is
 * written "\\", LF "\n", CR "\r" and every other byte below 0x20 and 0x7F
 * "\xHH" (two upper-case hex digits), so a value is always one line and no
 * value can fake another key. The signature is Ed25519 over these bytes,
 * base64 (RFC 4648, padded) in report_version.signature.
 */
cp_status report_signed_text(const report_version *v, const order *o, cp_buf *out);

/* Orders read per page by report_repair. */
#define REPORT_REPAIR_PAGE 256

/*
 * Called by report_repair per order found ahead of its version: what is
 * "version_written", "version_approved", "version_rejected",
 * "version_released" or "failed" (err then says why; NULL otherwise).
 */
typedef void (*report_repair_fn)(void *ctx, int64_t order_id, const char *what,
                                 const cp_error *err);

/*
 * Puts right what a crash between the order's move and its version's write
 * left behind (the two are separate transactions): an order reported or
 * approved whose draft was not frozen gets it as the next version; a
 * submitted version of an approved or returned order is marked approved or
 * rejected as the order's move says (reviewer and times from the order,
 * the rejection's reason from its history); an approved version of a
 * released order is released and signed with the order's release time.
 * Deterministic: the same database gives the same result, and a second run
 * finds nothing. *repaired (may be NULL) gets how many orders were changed.
 */
cp_status report_repair(report_store *s, report_repair_fn fn, void *ctx, size_t *repaired,
                        cp_error *err);

/* The public key (base64) and a check of a released version's signature. */
const char *report_public_key(const report_store *s);
bool report_verify(const report_store *s, const report_version *v, const order *o);

#endif
