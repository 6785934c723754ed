/*
 * policy.c - the access rules of cloudpacs: which actions each role opens,
 * which studies a principal may see, and who may grant which role.
 *
 * No part of the DICOM standard defines these rules; they are the
 * separation of duties of China's level-3 protection scheme (system,
 * security and audit administrators apart from clinical users) applied to
 * a reading network of institutions and contracts. DICOM only carries the
 * identity they are applied to (PS3.7 D.3.3.7, PS3.15 Annex B for the audit
 * side). Every function here is pure: it reads the principal, nothing else.
 */
#include "auth/policy.h"

#include <string.h>

#include "auth/directory.h"
#include "core/alloc.h"

#define ACTION_BIT(a) (1u << (unsigned)(a))

/* What each role opens, as bits of policy_action. */
static const struct {
    unsigned role;
    unsigned actions;
} role_actions[] = {
    { ROLE_TECHNICIAN, ACTION_BIT(POLICY_STUDY_READ) | ACTION_BIT(POLICY_STUDY_STORE) },
    { ROLE_INSTITUTION_ADMIN,
      ACTION_BIT(POLICY_STUDY_READ) | ACTION_BIT(POLICY_STUDY_STORE) |
      ACTION_BIT(POLICY_USER_MANAGE) | ACTION_BIT(POLICY_ROLE_GRANT) |
      ACTION_BIT(POLICY_QUALIFICATION_MANAGE) | ACTION_BIT(POLICY_CONTRACT_MANAGE) |
      ACTION_BIT(POLICY_INSTITUTION_MANAGE) },
    { ROLE_RADIOLOGIST, ACTION_BIT(POLICY_STUDY_READ) },
    { ROLE_REVIEWER, ACTION_BIT(POLICY_STUDY_READ) },
    { ROLE_SYSTEM_ADMIN,
      ACTION_BIT(POLICY_INSTITUTION_MANAGE) | ACTION_BIT(POLICY_USER_MANAGE) |
      ACTION_BIT(POLICY_ROLE_GRANT) | ACTION_BIT(POLICY_TOKEN_MANAGE) |
      ACTION_BIT(POLICY_AE_MANAGE) | ACTION_BIT(POLICY_METRICS_READ) },
    { ROLE_SECURITY_ADMIN,
      ACTION_BIT(POLICY_ADMIN_ROLE_GRANT) | ACTION_BIT(POLICY_ROLE_GRANT) |
      ACTION_BIT(POLICY_ACCOUNT_UNLOCK) },
    { ROLE_AUDIT_ADMIN, ACTION_BIT(POLICY_AUDIT_READ) },
};

static const char *const action_names[] = {
    [POLICY_STUDY_READ] = "studies.read",
    [POLICY_STUDY_STORE] = "studies.store",
    [POLICY_STUDY_DELETE] = "studies.delete",
    [POLICY_INSTITUTION_MANAGE] = "institutions.manage",
    [POLICY_USER_MANAGE] = "users.manage",
    [POLICY_ROLE_GRANT] = "roles.grant",
    [POLICY_ADMIN_ROLE_GRANT] = "admin_roles.grant",
    [POLICY_ACCOUNT_UNLOCK] = "accounts.unlock",
    [POLICY_QUALIFICATION_MANAGE] = "qualifications.manage",
    [POLICY_CONTRACT_MANAGE] = "contracts.manage",
    [POLICY_TOKEN_MANAGE] = "tokens.manage",
    [POLICY_AE_MANAGE] = "aes.manage",
    [POLICY_AUDIT_READ] = "audit.read",
    [POLICY_METRICS_READ] = "metrics.read",
};

#define ACTION_COUNT (sizeof action_names / sizeof action_names[0])

void principal_free(principal *p)
{
    if (p == NULL)
        return;
    cp_free(p->grants);
    cp_free(p);
}

cp_status principal_copy(const principal *p, principal **out)
{
    principal *c;

    *out = NULL;
    if (p == NULL || (p->grant_count > 0 && p->grants == NULL))
        return CP_ERR_INVALID;
    c = cp_malloc(sizeof *c);
    if (c == NULL)
        return CP_ERR_NOMEM;
    *c = *p;
    c->grants = NULL;

    if (p->grant_count > 0) {
        c->grants = cp_malloc(p->grant_count * sizeof *c->grants);
        if (c->grants == NULL) {
            cp_free(c);
            return CP_ERR_NOMEM;
        }
        memcpy(c->grants, p->grants, p->grant_count * sizeof *c->grants);
    }
    *out = c;
    return CP_OK;
}

const char *policy_action_name(policy_action action)
{
    if ((unsigned)action >= ACTION_COUNT)
        return NULL;
    return action_names[action];
}

/*
 * The roles a principal acts with. A device acts with the roles of its
 * token (never a separated one) or, for an AE, as a technician; a
 * principal still owing a second factor acts with none.
 */
static unsigned effective_roles(const principal *p)
{
    if (p->enrol_only)
        return 0;
    switch (p->kind) {
    case PRINCIPAL_USER:
        return p->roles & ROLE_ALL;
    case PRINCIPAL_TOKEN:
        return p->roles & ROLE_ALL & ~ROLE_SEPARATED;
    case PRINCIPAL_AE:
        return ROLE_TECHNICIAN;
    case PRINCIPAL_SERVICE:
        return 0;
    }
    return 0;
}

static bool is_service(const principal *p)
{
    return p->kind == PRINCIPAL_SERVICE && !p->enrol_only;
}

bool policy_allows(const principal *p, policy_action action)
{
    unsigned roles, actions = 0;
    size_t i;

    if (p == NULL || (unsigned)action >= ACTION_COUNT || action_names[action] == NULL)
        return false;
    if (is_service(p))
        return true;

    roles = effective_roles(p);
    for (i = 0; i < sizeof role_actions / sizeof role_actions[0]; i++)
        if (roles & role_actions[i].role)
            actions |= role_actions[i].actions;
    return (actions & ACTION_BIT(action)) != 0;
}

/* Whether modality is one of the comma-separated names in list, exactly. */
static bool modality_listed(const char *list, const char *modality)
{
    size_t mlen = strlen(modality);
    const char *item = list;

    while (*item != '\0') {
        const char *end = strchr(item, ',');
        size_t len = end != NULL ? (size_t)(end - item) : strlen(item);

        while (len > 0 && item[0] == ' ') {
            item++;
            len--;
        }
        while (len > 0 && item[len - 1] == ' ')
            len--;
        if (len == mlen && memcmp(item, modality, len) == 0)
            return true;
        if (end == NULL)
            break;
        item = end + 1;
    }
    return false;
}

bool policy_study_visible(const principal *p, int64_t institution_id, const char *modality)
{
    size_t i;
    bool any_modality = modality == NULL || modality[0] == '\0';

    if (p == NULL)
        return false;
    if (is_service(p))
        return true;
    if (p->kind == PRINCIPAL_USER && (p->roles & ROLE_SEPARATED))
        return false;
    if (!policy_allows(p, POLICY_STUDY_READ) || p->grants == NULL)
        return false;

    /*
     * A study without a modality could be anything, so only a grant with
     * no modality limit opens it.
     */
    for (i = 0; i < p->grant_count; i++) {
        const principal_grant *g = &p->grants[i];

        if (g->institution_id != institution_id)
            continue;
        if (g->modalities[0] == '\0')
            return true;
        if (!any_modality && modality_listed(g->modalities, modality))
            return true;
    }
    return false;
}

void policy_query_scope(const principal *p, bool *all, int64_t *ids, size_t cap, size_t *count)
{
    size_t i, j, n = 0;

    *all = false;
    *count = 0;
    if (p == NULL)
        return;
    if (is_service(p)) {
        *all = true;
        return;
    }
    if (p->kind == PRINCIPAL_USER && (p->roles & ROLE_SEPARATED))
        return;
    if (!policy_allows(p, POLICY_STUDY_READ) || p->grants == NULL || ids == NULL)
        return;

    for (i = 0; i < p->grant_count && n < cap; i++) {
        int64_t id = p->grants[i].institution_id;

        for (j = 0; j < n; j++)
            if (ids[j] == id)
                break;
        if (j == n)
            ids[n++] = id;
    }
    *count = n;
}

bool policy_manages_institution(const principal *p, int64_t institution_id)
{
    size_t i, own;

    if (p == NULL || institution_id <= 0)
        return false;
    if (is_service(p))
        return true;

    if (effective_roles(p) & ROLE_SYSTEM_ADMIN)
        return p->kind == PRINCIPAL_USER;
    if (!(effective_roles(p) & ROLE_INSTITUTION_ADMIN) || p->grants == NULL)
        return false;

    /*
     * Only the institution's own subtree counts: a contract with no
     * modality limit also makes a grant with empty modalities, and reading
     * for a hospital is no right to manage it.
     */
    own = p->own_grant_count > 0 ? p->own_grant_count : p->grant_count;
    if (own > p->grant_count)
        own = p->grant_count;
    for (i = 0; i < own; i++)
        if (p->grants[i].institution_id == institution_id &&
            p->grants[i].modalities[0] == '\0')
            return true;
    return false;
}

bool policy_may_grant(const principal *p, unsigned roles, int64_t target_user_id)
{
    unsigned mine;

    if (p == NULL || (roles & ~ROLE_ALL) != 0)
        return false;
    if (p->kind == PRINCIPAL_USER && p->id == target_user_id)
        return false;
    if (is_service(p))
        return true;

    mine = effective_roles(p);
    if (roles & ROLE_SEPARATED)
        return p->kind == PRINCIPAL_USER && (mine & ROLE_SECURITY_ADMIN) != 0;
    return (mine & (ROLE_SYSTEM_ADMIN | ROLE_SECURITY_ADMIN | ROLE_INSTITUTION_ADMIN)) != 0;
}
