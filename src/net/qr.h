/*
 * qr.h - the Query/Retrieve service class as SCP (PS3.4 Annex C): C-FIND
 * in the Patient Root and Study Root information models at every level,
 * answered from the index; C-MOVE to configured AEs and C-GET on the
 * calling association, with instances streamed from the blob store as
 * C-STORE sub-operations (PS3.7 9.1.1).
 *
 * The server (scp.h) gathers the identifier and calls qr_serve with it;
 * this module turns the identifier into index terms, encodes each match
 * as a response identifier in the query's character set, and drives the
 * sub-operations. The identifier functions are public for the tests.
 */
#ifndef CP_NET_QR_H
#define CP_NET_QR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/limits.h"
#include "core/status.h"
#include "dicom/vr.h"
#include "index/index.h"
#include "net/assoc.h"
#include "net/scp.h"
#include "store/store.h"

/* Query/Retrieve levels (PS3.4 C.3). */
typedef enum qr_level {
    QR_LEVEL_PATIENT,
    QR_LEVEL_STUDY,
    QR_LEVEL_SERIES,
    QR_LEVEL_IMAGE,
} qr_level;

/* Information models (PS3.4 C.3.1, C.3.2). */
typedef enum qr_model {
    QR_MODEL_PATIENT_ROOT,
    QR_MODEL_STUDY_ROOT,
} qr_model;

/* One key of an identifier: its tag, VR and value decoded to UTF-8. */
typedef struct qr_key {
    uint32_t tag;
    dcm_vr vr;
    char *value;                        /* NUL-terminated, padding removed */
} qr_key;

/* An identifier taken apart. Free with qr_query_free. */
typedef struct qr_query {
    qr_model model;
    qr_level level;
    char charset[65];                   /* the query's (0008,0005), "" when none */
    qr_key keys[QR_KEYS_MAX];
    size_t key_count;
    index_term terms[INDEX_QUERY_TERMS_MAX];
    size_t term_count;
    bool unsupported;                   /* a key with a value the index cannot match */
} qr_query;

/*
 * Parses the identifier (len bytes in transfer syntax ts_uid) of a request
 * for sop_class into q. On failure *status is the DIMSE status to answer
 * (A900 no or bad level or a unique key missing, C000 unreadable bytes)
 * and err says why, without patient data.
 */
cp_status qr_query_parse(const char *sop_class, const uint8_t *data, size_t len,
                         const char *ts_uid, qr_query *q, uint16_t *status, cp_error *err);

void qr_query_free(qr_query *q);

/* The index level a query level is answered at (PATIENT: study rows grouped). */
index_level qr_index_level(qr_level level);

/*
 * Appends to out the response identifier for one match: every key of the
 * query, with the row's value where the index has one (empty otherwise),
 * the level, and the character set. Text is encoded in the query's
 * character set; when it cannot hold a value, or the query named none and
 * a value is not ASCII, the identifier is in UTF-8 (ISO_IR 192) instead.
 * patient_studies is NumberOfPatientRelatedStudies for patient rows.
 */
cp_status qr_encode_row(const qr_query *q, const index_row *row, uint32_t patient_studies,
                        const char *retrieve_ae, const char *ts_uid, cp_buf *out);

/*
 * Added for the audit trail: one study a C-MOVE or C-GET named and could
 * see, with what became of its instances.
 */
typedef struct qr_audit_study {
    const char *study_uid;
    const char *patient_id;             /* Patient ID, never a name */
    int64_t institution_id;
    uint32_t instances;                 /* sub-operations it needed */
    uint32_t sent;                      /* completed or with a warning */
} qr_audit_study;

/*
 * Added for the audit trail: one operation once its final response is
 * sent (or the association broke under it).
 */
typedef struct qr_audit_info {
    uint16_t command_field;             /* DIMSE_C_FIND_RQ, _MOVE_RQ or _GET_RQ */
    const char *calling_ae;
    const char *peer;
    const qr_query *query;              /* NULL when the identifier was unreadable */
    uint16_t status;                    /* the final status */
    uint64_t matches;                   /* C-FIND: responses with an identifier */
    const char *move_destination;       /* C-MOVE: the destination AE, else "" */
    const scp_qr_counts *counts;        /* C-MOVE, C-GET: the final counts */
    const qr_audit_study *studies;      /* C-MOVE, C-GET: the studies matched */
    size_t study_count;
} qr_audit_info;

/*
 * Added for authorisation: decisions per operation, with the association's
 * identity (scp_qr_identity). scope fills spec->institutions and
 * spec->institution_count (left NULL: every institution; the array must
 * live as long as the identity) or returns false to refuse the operation
 * (0124H, Refused: Not Authorized, PS3.7 Annex C). visible is asked for
 * every C-FIND match and every instance a retrieve would send, with the
 * row's institution and modality ("" unknown): hidden rows are left out as
 * if they did not match. audit is told once per operation. Any member may
 * be NULL: no limit, every row visible, no audit.
 */
typedef struct qr_auth {
    bool (*scope)(void *ctx, void *identity, index_query_spec *spec);
    bool (*visible)(void *ctx, void *identity, int64_t institution_id, const char *modality);
    void (*audit)(void *ctx, void *identity, const qr_audit_info *info);
    void *ctx;
} qr_auth;

/* The service. */
typedef struct qr_config {
    index_db *idx;
    store *st;
    const char *ae_title;               /* ours: calling AE of C-MOVE associations */
    assoc_params params;                /* for C-MOVE associations */
    qr_auth auth;                       /* added for authorisation; zeroed: none */
} qr_config;

typedef struct qr qr;

cp_status qr_create(const qr_config *cfg, qr **out);
void qr_destroy(qr *q);

/* scp_qr_service.run, with ctx a qr. */
void qr_serve(void *ctx, scp_qr_call *call);

#endif
