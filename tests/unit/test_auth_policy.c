/*
 * test_auth_policy.c - the access rules of policy.h: every action for every
 * role, devices and the service principal, study visibility through
 * contracts limited by modality, query scopes, which institutions an admin
 * manages, and who may grant which role.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "auth/directory.h"
#include "auth/policy.h"

#define ACTIONS 14

/* Expected rights, one row per role, columns in policy_action order. */
static const struct {
    unsigned role;
    const char *actions[ACTIONS + 1];
} expected[] = {
    { ROLE_TECHNICIAN, { "studies.read", "studies.store", NULL } },
    { ROLE_INSTITUTION_ADMIN,
      { "studies.read", "studies.store", "institutions.manage", "users.manage",
        "roles.grant", "qualifications.manage", "contracts.manage", NULL } },
    { ROLE_RADIOLOGIST, { "studies.read", NULL } },
    { ROLE_REVIEWER, { "studies.read", NULL } },
    { ROLE_SYSTEM_ADMIN,
      { "institutions.manage", "users.manage", "roles.grant", "tokens.manage",
        "aes.manage", "metrics.read", NULL } },
    { ROLE_SECURITY_ADMIN, { "roles.grant", "admin_roles.grant", "accounts.unlock", NULL } },
    { ROLE_AUDIT_ADMIN, { "audit.read", NULL } },
};

static bool listed(const char *const *names, const char *name)
{
    for (; *names != NULL; names++)
        if (strcmp(*names, name) == 0)
            return true;
    return false;
}

static principal user(unsigned roles)
{
    principal p;

    memset(&p, 0, sizeof p);
    p.kind = PRINCIPAL_USER;
    p.id = 42;
    strcpy(p.name, "someone");
    p.institution_id = 1;
    p.roles = roles;
    return p;
}

static void test_action_names(void **state)
{
    static const char *const names[ACTIONS] = {
        "studies.read", "studies.store", "studies.delete", "institutions.manage",
        "users.manage", "roles.grant", "admin_roles.grant", "accounts.unlock",
        "qualifications.manage", "contracts.manage", "tokens.manage", "aes.manage",
        "audit.read", "metrics.read",
    };
    int a;

    (void)state;
    for (a = 1; a <= ACTIONS; a++)
        assert_string_equal(policy_action_name((policy_action)a), names[a - 1]);
    assert_null(policy_action_name((policy_action)0));
    assert_null(policy_action_name((policy_action)(ACTIONS + 1)));
    assert_null(policy_action_name((policy_action)1000));
}

static void test_rules_by_role(void **state)
{
    size_t i;
    int a;

    (void)state;
    for (i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        principal p = user(expected[i].role);

        for (a = 1; a <= ACTIONS; a++) {
            const char *name = policy_action_name((policy_action)a);
            bool want = listed(expected[i].actions, name);

            if (policy_allows(&p, (policy_action)a) != want)
                fail_msg("role %s, action %s: expected %s",
                         directory_role_name(expected[i].role), name,
                         want ? "allowed" : "refused");
        }
    }
}

static void test_roles_combine_and_extremes(void **state)
{
    principal p = user(ROLE_TECHNICIAN | ROLE_RADIOLOGIST);
    principal none = user(0);
    principal svc;
    int a;

    (void)state;
    assert_true(policy_allows(&p, POLICY_STUDY_STORE));
    assert_false(policy_allows(&p, POLICY_USER_MANAGE));
    assert_false(policy_allows(NULL, POLICY_STUDY_READ));
    assert_false(policy_allows(&p, (policy_action)0));
    assert_false(policy_allows(&p, (policy_action)99));

    memset(&svc, 0, sizeof svc);
    svc.kind = PRINCIPAL_SERVICE;
    strcpy(svc.name, "service");
    for (a = 1; a <= ACTIONS; a++) {
        assert_true(policy_allows(&svc, (policy_action)a));
        assert_false(policy_allows(&none, (policy_action)a));
    }

    /* Owing a second factor: nothing at all, whatever the roles. */
    p = user(ROLE_INSTITUTION_ADMIN);
    p.enrol_only = true;
    for (a = 1; a <= ACTIONS; a++)
        assert_false(policy_allows(&p, (policy_action)a));
}

static void test_devices(void **state)
{
    principal_grant g = { .institution_id = 7, .modalities = "" };
    principal ae, tok;
    int a;

    (void)state;
    memset(&ae, 0, sizeof ae);
    ae.kind = PRINCIPAL_AE;
    ae.institution_id = 7;
    ae.grants = &g;
    ae.grant_count = 1;
    for (a = 1; a <= ACTIONS; a++)
        assert_int_equal(policy_allows(&ae, (policy_action)a),
                         a == POLICY_STUDY_READ || a == POLICY_STUDY_STORE);
    assert_true(policy_study_visible(&ae, 7, "CT"));
    assert_false(policy_study_visible(&ae, 8, "CT"));

    /* A token acts by its roles, never with a separated one. */
    memset(&tok, 0, sizeof tok);
    tok.kind = PRINCIPAL_TOKEN;
    tok.id = 3;
    tok.institution_id = 7;
    tok.roles = ROLE_RADIOLOGIST | ROLE_SYSTEM_ADMIN;
    tok.grants = &g;
    tok.grant_count = 1;
    assert_true(policy_allows(&tok, POLICY_STUDY_READ));
    assert_false(policy_allows(&tok, POLICY_STUDY_STORE));
    assert_false(policy_allows(&tok, POLICY_TOKEN_MANAGE));
    assert_false(policy_manages_institution(&tok, 7));
    tok.roles = ROLE_TECHNICIAN;
    assert_true(policy_allows(&tok, POLICY_STUDY_STORE));
}

static void test_visibility_by_contract(void **state)
{
    /* Own subtree 1, 2; contracts: 10, 11 for CR and DX; 20 for everything. */
    principal_grant grants[] = {
        { 1, "" }, { 2, "" }, { 10, "CR,DX" }, { 11, "CR,DX" }, { 20, "" },
    };
    principal doc = user(ROLE_RADIOLOGIST);
    principal tech = user(ROLE_TECHNICIAN);
    principal_grant own = { 1, "" };

    (void)state;
    doc.grants = grants + 2;
    doc.grant_count = 3;
    assert_true(policy_study_visible(&doc, 10, "CR"));
    assert_true(policy_study_visible(&doc, 11, "DX"));
    assert_false(policy_study_visible(&doc, 10, "CT"));
    assert_false(policy_study_visible(&doc, 10, "C"));
    assert_false(policy_study_visible(&doc, 10, "CR,DX"));
    assert_false(policy_study_visible(&doc, 10, "cr"));
    assert_false(policy_study_visible(&doc, 10, NULL));
    assert_false(policy_study_visible(&doc, 10, ""));
    assert_true(policy_study_visible(&doc, 20, "MR"));
    assert_true(policy_study_visible(&doc, 20, NULL));
    assert_true(policy_study_visible(&doc, 20, ""));
    assert_false(policy_study_visible(&doc, 1, "CR"));
    assert_false(policy_study_visible(&doc, 99, "CR"));

    tech.grants = &own;
    tech.grant_count = 1;
    assert_true(policy_study_visible(&tech, 1, "CT"));
    assert_true(policy_study_visible(&tech, 1, NULL));
    assert_false(policy_study_visible(&tech, 2, "CT"));

    /* A separated admin sees no study, even with grants. */
    doc.roles = ROLE_SYSTEM_ADMIN;
    assert_false(policy_study_visible(&doc, 20, "MR"));
    doc.roles = ROLE_RADIOLOGIST;
    doc.enrol_only = true;
    assert_false(policy_study_visible(&doc, 20, "MR"));
    assert_false(policy_study_visible(NULL, 20, "MR"));
}

static void test_query_scope(void **state)
{
    principal_grant grants[] = { { 1, "" }, { 2, "" }, { 2, "CR" }, { 5, "MR" } };
    principal p = user(ROLE_TECHNICIAN | ROLE_RADIOLOGIST);
    principal svc;
    int64_t ids[8];
    size_t n = 99;
    bool all = true;

    (void)state;
    p.grants = grants;
    p.grant_count = 4;
    policy_query_scope(&p, &all, ids, 8, &n);
    assert_false(all);
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 2);
    assert_int_equal(ids[2], 5);

    policy_query_scope(&p, &all, ids, 2, &n);
    assert_int_equal(n, 2);

    p.roles = ROLE_AUDIT_ADMIN;
    policy_query_scope(&p, &all, ids, 8, &n);
    assert_false(all);
    assert_int_equal(n, 0);

    memset(&svc, 0, sizeof svc);
    svc.kind = PRINCIPAL_SERVICE;
    policy_query_scope(&svc, &all, ids, 8, &n);
    assert_true(all);
    assert_int_equal(n, 0);
}

static void test_manages_institution(void **state)
{
    /* Own subtree 1, 2; a contract without modality limits opens 30. */
    principal_grant grants[] = { { 1, "" }, { 2, "" }, { 30, "" } };
    principal admin = user(ROLE_INSTITUTION_ADMIN | ROLE_RADIOLOGIST);
    principal sys = user(ROLE_SYSTEM_ADMIN);
    principal tech = user(ROLE_TECHNICIAN);

    (void)state;
    admin.grants = grants;
    admin.grant_count = 3;
    admin.own_grant_count = 2;
    assert_true(policy_manages_institution(&admin, 1));
    assert_true(policy_manages_institution(&admin, 2));
    assert_false(policy_manages_institution(&admin, 30));
    assert_false(policy_manages_institution(&admin, 4));
    assert_true(policy_study_visible(&admin, 30, "CT"));

    /* Made by hand without own_grant_count: every unlimited grant counts. */
    admin.own_grant_count = 0;
    admin.grant_count = 2;
    assert_true(policy_manages_institution(&admin, 2));

    assert_true(policy_manages_institution(&sys, 1));
    assert_true(policy_manages_institution(&sys, 12345));
    tech.grants = grants;
    tech.grant_count = 2;
    assert_false(policy_manages_institution(&tech, 1));
    assert_false(policy_manages_institution(&sys, 0));
    assert_false(policy_manages_institution(NULL, 1));
}

static void test_may_grant(void **state)
{
    principal sec = user(ROLE_SECURITY_ADMIN);
    principal sys = user(ROLE_SYSTEM_ADMIN);
    principal admin = user(ROLE_INSTITUTION_ADMIN);
    principal tech = user(ROLE_TECHNICIAN);
    principal audit = user(ROLE_AUDIT_ADMIN);
    principal svc;

    (void)state;
    /* Separated roles: only the security admin, never to themselves. */
    assert_true(policy_may_grant(&sec, ROLE_SYSTEM_ADMIN, 7));
    assert_true(policy_may_grant(&sec, ROLE_AUDIT_ADMIN, 7));
    assert_true(policy_may_grant(&sec, ROLE_SECURITY_ADMIN, 7));
    assert_false(policy_may_grant(&sec, ROLE_SECURITY_ADMIN, sec.id));
    assert_false(policy_may_grant(&sec, ROLE_RADIOLOGIST, sec.id));
    assert_false(policy_may_grant(&sys, ROLE_AUDIT_ADMIN, 7));
    assert_false(policy_may_grant(&admin, ROLE_SYSTEM_ADMIN, 7));
    assert_false(policy_may_grant(&audit, ROLE_AUDIT_ADMIN, 7));

    /* Clinical roles: system, security and institution admins. */
    assert_true(policy_may_grant(&sec, ROLE_RADIOLOGIST | ROLE_REVIEWER, 7));
    assert_true(policy_may_grant(&sys, ROLE_TECHNICIAN, 7));
    assert_true(policy_may_grant(&admin, ROLE_TECHNICIAN | ROLE_RADIOLOGIST, 7));
    assert_true(policy_may_grant(&admin, 0, 7));
    assert_false(policy_may_grant(&admin, ROLE_TECHNICIAN, admin.id));
    assert_false(policy_may_grant(&tech, ROLE_TECHNICIAN, 7));
    assert_false(policy_may_grant(&audit, ROLE_TECHNICIAN, 7));
    assert_false(policy_may_grant(&sys, ROLE_TECHNICIAN | ROLE_SECURITY_ADMIN, 7));
    assert_false(policy_may_grant(&sec, 1u << 12, 7));
    assert_false(policy_may_grant(NULL, ROLE_TECHNICIAN, 7));

    sec.enrol_only = true;
    assert_false(policy_may_grant(&sec, ROLE_AUDIT_ADMIN, 7));

    memset(&svc, 0, sizeof svc);
    svc.kind = PRINCIPAL_SERVICE;
    assert_true(policy_may_grant(&svc, ROLE_SECURITY_ADMIN, 1));
}

static void test_copy_and_free(void **state)
{
    principal_grant grants[] = { { 1, "" }, { 10, "CR" } };
    principal p = user(ROLE_RADIOLOGIST);
    principal *c = NULL;

    (void)state;
    p.grants = grants;
    p.grant_count = 2;
    p.own_grant_count = 1;
    strcpy(p.session_id, "0123456789abcdef");
    assert_int_equal(principal_copy(&p, &c), CP_OK);
    assert_non_null(c);
    assert_ptr_not_equal(c->grants, p.grants);
    assert_int_equal(c->grant_count, 2);
    assert_int_equal(c->own_grant_count, 1);
    assert_string_equal(c->grants[1].modalities, "CR");
    assert_string_equal(c->session_id, "0123456789abcdef");
    principal_free(c);

    p.grants = NULL;
    p.grant_count = 0;
    assert_int_equal(principal_copy(&p, &c), CP_OK);
    assert_null(c->grants);
    principal_free(c);
    principal_free(NULL);
    assert_int_equal(principal_copy(NULL, &c), CP_ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_action_names),
        cmocka_unit_test(test_rules_by_role),
        cmocka_unit_test(test_roles_combine_and_extremes),
        cmocka_unit_test(test_devices),
        cmocka_unit_test(test_visibility_by_contract),
        cmocka_unit_test(test_query_scope),
        cmocka_unit_test(test_manages_institution),
        cmocka_unit_test(test_may_grant),
        cmocka_unit_test(test_copy_and_free),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
