/*
 * policy.h - who may do what: the principal a request or an association
 * acts as, and the rules that decide each action and which studies it may
 * see. Pure functions of the principal: the principal is built (and cached)
 * by session.h from the directory, so a decision here never touches the
 * database or Redis.
 *
 * The rules:
 *   - a technician (or a device: an AE or an API token of an institution)
 *     sees and sends the studies of its own institution and its subtree;
 *   - an institution admin sees its subtree's studies and manages its
 *     subtree's users (clinical roles only), qualifications and contracts;
 *   - a radiologist or reviewer sees the studies of the institutions they
 *     hold an active contract with (and their subtrees), limited to the
 *     contract's modalities, and of orders they hold (consult, later);
 *   - the system admin manages institutions, users, application entities
 *     and API tokens, and sees no patient data;
 *   - the security admin grants and revokes roles (the three separated
 *     admin roles only they may grant, never to themselves), unlocks
 *     accounts and ends sessions, and sees no patient data;
 *   - the audit admin reads, exports and verifies the audit trail, and
 *     does nothing else;
 *   - the service principal (the configured service token, local tools)
 *     may do everything but is recorded as itself in the audit trail.
 */
#ifndef CP_AUTH_POLICY_H
#define CP_AUTH_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef enum principal_kind {
    PRINCIPAL_USER = 1,
    PRINCIPAL_TOKEN = 2,                /* an API token of an institution */
    PRINCIPAL_AE = 3,                   /* a DICOM application entity */
    PRINCIPAL_SERVICE = 4,              /* the service token: every right */
} principal_kind;

/* The institutions one contract opens, with what it restricts. */
typedef struct principal_grant {
    int64_t institution_id;             /* one institution of the subtree */
    char modalities[129];               /* "" every modality, else "CR,DX" */
} principal_grant;

typedef struct principal {
    principal_kind kind;
    int64_t id;                         /* user id, token id; 0 for AE and service */
    char name[65];                      /* username, token name, AE title, "service" */
    int64_t institution_id;             /* the one it belongs to; 0 for the service */
    unsigned roles;                     /* directory_role bits */
    int title;                          /* directory_user.title */
    bool may_self_approve;
    bool enrol_only;                    /* must enrol a second factor before anything */
    int64_t profile_version;
    char session_id[17];                /* short, loggable id of the session; "" none */
    char peer[64];                      /* where it came from */
    /*
     * Institutions whose studies it may see: its own subtree (for
     * institution members and devices), then one entry per institution
     * opened by a contract. Owned by the principal.
     */
    principal_grant *grants;
    size_t grant_count;
    /*
     * Added: how many of the first grants are its own subtree (what an
     * institution admin manages), so that a contract without modality
     * limits is never taken for it. 0 (a principal made by hand): every
     * grant with empty modalities counts as its own.
     */
    size_t own_grant_count;
} principal;

/* Frees a principal made by session.h or principal_copy. NULL is fine. */
void principal_free(principal *p);

/* A deep copy (for a request that outlives its hook). */
cp_status principal_copy(const principal *p, principal **out);

typedef enum policy_action {
    POLICY_STUDY_READ = 1,              /* query, retrieve, view */
    POLICY_STUDY_STORE,                 /* C-STORE, STOW-RS, import */
    POLICY_STUDY_DELETE,
    POLICY_INSTITUTION_MANAGE,
    POLICY_USER_MANAGE,                 /* create, update, reset password */
    POLICY_ROLE_GRANT,                  /* clinical roles */
    POLICY_ADMIN_ROLE_GRANT,            /* the three separated roles */
    POLICY_ACCOUNT_UNLOCK,              /* unlock, end sessions */
    POLICY_QUALIFICATION_MANAGE,
    POLICY_CONTRACT_MANAGE,
    POLICY_TOKEN_MANAGE,
    POLICY_AE_MANAGE,
    POLICY_AUDIT_READ,
    POLICY_METRICS_READ,
} policy_action;

/* "studies.read", "institutions.manage", ... (for /api/me); NULL if unknown. */
const char *policy_action_name(policy_action action);

/* Whether the principal may do the action at all (anywhere). */
bool policy_allows(const principal *p, policy_action action);

/*
 * Whether it may see the studies of institution_id with this modality (NULL
 * or "": any). The service principal sees everything.
 */
bool policy_study_visible(const principal *p, int64_t institution_id, const char *modality);

/*
 * The institutions a query is limited to: *all is true for the service
 * principal (no limit); otherwise the distinct institution ids are copied
 * to ids (at most cap; *count says how many, possibly none). Modality
 * limits of contracts are applied to results with policy_study_visible.
 */
void policy_query_scope(const principal *p, bool *all, int64_t *ids, size_t cap, size_t *count);

/*
 * Whether the principal may manage (users, contracts, child institutions)
 * within institution_id: the system admin everywhere, an institution admin
 * inside its subtree (the subtree is in grants with empty modalities).
 */
bool policy_manages_institution(const principal *p, int64_t institution_id);

/*
 * Whether the principal may give `roles` to a user; refuses separated roles
 * to all but the security admin, and any grant to oneself (target_user_id).
 */
bool policy_may_grant(const principal *p, unsigned roles, int64_t target_user_id);

#endif
