/*
 * test_auth_directory.c - the identity store on SQLite: role and kind names,
 * the institution tree (subtrees, cycles, duplicate codes), users and the
 * separation of the three administrators, profile versions, qualifications,
 * contracts, API tokens, application entities, sealed TOTP secrets, and a
 * database shared with the index and reopened.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "auth/credential.h"
#include "auth/directory.h"
#include "core/alloc.h"
#include "index/index.h"

typedef struct fixture {
    char dir[64];
    char path[96];
    directory *d;
} fixture;

/* One Argon2id hash for every user: hashing costs a tenth of a second each. */
static char hash[CREDENTIAL_HASH_SIZE];

static int group_setup(void **state)
{
    (void)state;
    if (credential_init() != CP_OK)
        return -1;
    return credential_password_hash("fixture pass 1", hash, sizeof hash, NULL) == CP_OK ? 0
                                                                                        : -1;
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);

    snprintf(fx->dir, sizeof fx->dir, "/tmp/cloudpacs-dir-XXXXXX");
    if (mkdtemp(fx->dir) == NULL)
        return -1;
    snprintf(fx->path, sizeof fx->path, "%s/index.sqlite", fx->dir);
    if (directory_open_sqlite(fx->path, &fx->d, NULL) != CP_OK)
        return -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    char cmd[128];

    directory_close(fx->d);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->dir);
    if (system(cmd) != 0)
        return -1;
    free(fx);
    return 0;
}

static int64_t inst_add(directory *d, const char *code, directory_institution_kind kind,
                        int64_t parent)
{
    directory_institution i;

    memset(&i, 0, sizeof i);
    snprintf(i.code, sizeof i.code, "%s", code);
    snprintf(i.name, sizeof i.name, "Institution %s", code);
    i.kind = kind;
    i.parent_id = parent;
    assert_int_equal(directory_institution_create(d, &i, NULL), CP_OK);
    assert_true(i.id > 0);
    return i.id;
}

static cp_status user_try(directory *d, const char *name, int64_t inst, unsigned roles,
                          int64_t *id)
{
    directory_user u;
    cp_status st;

    memset(&u, 0, sizeof u);
    snprintf(u.username, sizeof u.username, "%s", name);
    snprintf(u.display_name, sizeof u.display_name, "Dr %s", name);
    u.institution_id = inst;
    u.roles = roles;
    st = directory_user_create(d, &u, hash, NULL);
    if (st == CP_OK && id != NULL)
        *id = u.id;
    return st;
}

static int64_t user_add(directory *d, const char *name, int64_t inst, unsigned roles)
{
    int64_t id = 0;

    assert_int_equal(user_try(d, name, inst, roles, &id), CP_OK);
    return id;
}

static int64_t version_of(directory *d, int64_t user)
{
    int64_t v = 0;

    assert_int_equal(directory_user_profile_version(d, user, &v, NULL), CP_OK);
    return v;
}

/* Collects ids (or ports, for AEs) of what a listing calls back with. */
typedef struct seen {
    int64_t ids[64];
    size_t n;
} seen;

static cp_status see_institution(void *ctx, const directory_institution *i)
{
    seen *s = ctx;

    s->ids[s->n++] = i->id;
    return CP_OK;
}

static cp_status see_user(void *ctx, const directory_user *u)
{
    seen *s = ctx;

    s->ids[s->n++] = u->id;
    return CP_OK;
}

static cp_status see_contract(void *ctx, const directory_contract *c)
{
    seen *s = ctx;

    s->ids[s->n++] = c->id;
    return CP_OK;
}

static cp_status see_token(void *ctx, const directory_api_token *t)
{
    seen *s = ctx;

    s->ids[s->n++] = t->id;
    return CP_OK;
}

static cp_status see_ae(void *ctx, const directory_ae *a)
{
    seen *s = ctx;

    s->ids[s->n++] = a->port;
    return CP_OK;
}

static void test_names(void **state)
{
    char text[128];
    unsigned roles = 0;
    cp_error err;

    (void)state;
    assert_string_equal(directory_role_name(ROLE_RADIOLOGIST), "radiologist");
    assert_string_equal(directory_role_name(ROLE_AUDIT_ADMIN), "audit_admin");
    assert_null(directory_role_name(ROLE_RADIOLOGIST | ROLE_REVIEWER));
    assert_null(directory_role_name(0));
    assert_int_equal(directory_role_parse("institution_admin"), ROLE_INSTITUTION_ADMIN);
    assert_int_equal(directory_role_parse("doctor"), 0);

    /* Every mask survives format then parse. */
    for (unsigned m = 0; m <= ROLE_ALL; m++) {
        assert_int_equal(directory_roles_format(m, text, sizeof text), CP_OK);
        assert_int_equal(directory_roles_parse(text, &roles, NULL), CP_OK);
        assert_int_equal(roles, m);
    }
    assert_int_equal(directory_roles_format(ROLE_RADIOLOGIST | ROLE_REVIEWER, text,
                                            sizeof text), CP_OK);
    assert_string_equal(text, "radiologist,reviewer");
    assert_int_equal(directory_roles_format(ROLE_ALL, text, 20), CP_ERR_LIMIT);
    assert_int_equal(directory_roles_parse(" technician , reviewer", &roles, NULL), CP_OK);
    assert_int_equal(roles, ROLE_TECHNICIAN | ROLE_REVIEWER);

    cp_error_clear(&err);
    assert_int_equal(directory_roles_parse("technician,wizard", &roles, &err), CP_ERR_INVALID);
    assert_non_null(strstr(err.detail, "wizard"));

    assert_string_equal(directory_kind_name(DIRECTORY_HOSPITAL), "hospital");
    assert_int_equal(directory_kind_parse("clinic"), DIRECTORY_CLINIC);
    assert_int_equal(directory_kind_parse("centre"), DIRECTORY_CENTRE);
    assert_int_equal(directory_kind_parse("center"), 0);
}

static void test_institution_tree(void **state)
{
    fixture *fx = *state;
    directory_institution i;
    int64_t c1, h1, k1, c2, *ids = NULL;
    size_t n = 0;
    seen s = { .n = 0 };

    c1 = inst_add(fx->d, "C1", DIRECTORY_CENTRE, 0);
    c2 = inst_add(fx->d, "C2", DIRECTORY_CENTRE, 0);
    h1 = inst_add(fx->d, "H1", DIRECTORY_HOSPITAL, c1);
    k1 = inst_add(fx->d, "K1", DIRECTORY_CLINIC, h1);

    assert_int_equal(directory_institution_subtree(fx->d, c1, &ids, &n, NULL), CP_OK);
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], c1);
    assert_int_equal(ids[1], h1);
    assert_int_equal(ids[2], k1);
    cp_free(ids);
    assert_int_equal(directory_institution_subtree(fx->d, 999, &ids, &n, NULL),
                     CP_ERR_NOT_FOUND);

    /* Parents before children, by id within a level. */
    assert_int_equal(directory_institution_list(fx->d, see_institution, &s, NULL), CP_OK);
    assert_int_equal(s.n, 4);
    assert_int_equal(s.ids[0], c1);
    assert_int_equal(s.ids[1], c2);
    assert_int_equal(s.ids[2], h1);
    assert_int_equal(s.ids[3], k1);

    /* Codes are unique without regard to case; parents must exist. */
    memset(&i, 0, sizeof i);
    snprintf(i.code, sizeof i.code, "c1");
    snprintf(i.name, sizeof i.name, "Again");
    i.kind = DIRECTORY_CLINIC;
    assert_int_equal(directory_institution_create(fx->d, &i, NULL), CP_ERR_EXISTS);
    snprintf(i.code, sizeof i.code, "NEW");
    i.parent_id = 999;
    assert_int_equal(directory_institution_create(fx->d, &i, NULL), CP_ERR_NOT_FOUND);
    i.parent_id = 0;
    snprintf(i.code, sizeof i.code, "bad code");
    assert_int_equal(directory_institution_create(fx->d, &i, NULL), CP_ERR_INVALID);
    snprintf(i.code, sizeof i.code, "NEW");
    i.kind = (directory_institution_kind)9;
    assert_int_equal(directory_institution_create(fx->d, &i, NULL), CP_ERR_INVALID);
    i.kind = DIRECTORY_CLINIC;
    memset(i.name, 0, sizeof i.name);
    memcpy(i.name, "\xC3\x28", 2);
    assert_int_equal(directory_institution_create(fx->d, &i, NULL), CP_ERR_INVALID);

    assert_int_equal(directory_institution_by_code(fx->d, "h1", &i, NULL), CP_OK);
    assert_int_equal(i.id, h1);
    assert_int_equal(i.parent_id, c1);
    assert_int_equal(i.kind, DIRECTORY_HOSPITAL);
    assert_string_equal(i.code, "H1");

    /* No cycles: not under itself, not under its own subtree. */
    assert_int_equal(directory_institution_get(fx->d, c1, &i, NULL), CP_OK);
    i.parent_id = k1;
    assert_int_equal(directory_institution_update(fx->d, &i, NULL), CP_ERR_INVALID);
    i.parent_id = c1;
    assert_int_equal(directory_institution_update(fx->d, &i, NULL), CP_ERR_INVALID);

    /* A move changes both subtrees. */
    assert_int_equal(directory_institution_get(fx->d, k1, &i, NULL), CP_OK);
    i.parent_id = c2;
    i.disabled = true;
    snprintf(i.name, sizeof i.name, "Clinic \xE5\x8C\x97\xE4\xBA\xAC");
    assert_int_equal(directory_institution_update(fx->d, &i, NULL), CP_OK);
    assert_int_equal(directory_institution_subtree(fx->d, c2, &ids, &n, NULL), CP_OK);
    assert_int_equal(n, 2);
    assert_int_equal(ids[1], k1);
    cp_free(ids);
    assert_int_equal(directory_institution_get(fx->d, k1, &i, NULL), CP_OK);
    assert_true(i.disabled);
    assert_string_equal(i.name, "Clinic \xE5\x8C\x97\xE4\xBA\xAC");
    i.id = 999;
    assert_int_equal(directory_institution_update(fx->d, &i, NULL), CP_ERR_NOT_FOUND);
}

static void test_users_and_separation(void **state)
{
    fixture *fx = *state;
    int64_t c1, h1, k1, rad, sys, tech, one[1];
    char stored[CREDENTIAL_HASH_SIZE];
    directory_user u;
    seen s = { .n = 0 };

    c1 = inst_add(fx->d, "C1", DIRECTORY_CENTRE, 0);
    h1 = inst_add(fx->d, "H1", DIRECTORY_HOSPITAL, c1);
    k1 = inst_add(fx->d, "K1", DIRECTORY_CLINIC, h1);

    rad = user_add(fx->d, "dr.wang", c1, ROLE_RADIOLOGIST | ROLE_REVIEWER);
    sys = user_add(fx->d, "sysadmin", c1, ROLE_SYSTEM_ADMIN);
    tech = user_add(fx->d, "tech@k1", k1, ROLE_TECHNICIAN | ROLE_INSTITUTION_ADMIN);
    user_add(fx->d, "auditor", c1, ROLE_AUDIT_ADMIN);
    user_add(fx->d, "secadmin", c1, ROLE_SECURITY_ADMIN);

    /* A separated role is the only one its holder has. */
    assert_int_equal(user_try(fx->d, "mixed", c1, ROLE_SYSTEM_ADMIN | ROLE_TECHNICIAN, NULL),
                     CP_ERR_FORBIDDEN);
    assert_int_equal(user_try(fx->d, "twoadmins", c1, ROLE_SECURITY_ADMIN | ROLE_AUDIT_ADMIN,
                              NULL), CP_ERR_FORBIDDEN);
    assert_int_equal(directory_user_set_roles(fx->d, sys, ROLE_SYSTEM_ADMIN | ROLE_REVIEWER,
                                              NULL), CP_ERR_FORBIDDEN);
    assert_int_equal(directory_user_set_roles(fx->d, rad, ROLE_RADIOLOGIST | ROLE_AUDIT_ADMIN,
                                              NULL), CP_ERR_FORBIDDEN);
    assert_int_equal(directory_user_set_roles(fx->d, rad, 0x100, NULL), CP_ERR_INVALID);
    /* A kiosk is only a kiosk. */
    assert_int_equal(directory_user_set_roles(fx->d, rad, ROLE_KIOSK | ROLE_TECHNICIAN, NULL),
                     CP_ERR_FORBIDDEN);
    assert_int_equal(directory_user_set_roles(fx->d, 999, ROLE_TECHNICIAN, NULL),
                     CP_ERR_NOT_FOUND);
    assert_int_equal(directory_user_set_roles(fx->d, sys, ROLE_SECURITY_ADMIN, NULL), CP_OK);

    /* Usernames: unique without regard to case, a limited alphabet. */
    assert_int_equal(user_try(fx->d, "DR.WANG", c1, ROLE_TECHNICIAN, NULL), CP_ERR_EXISTS);
    assert_int_equal(user_try(fx->d, "dr wang", c1, ROLE_TECHNICIAN, NULL), CP_ERR_INVALID);
    assert_int_equal(user_try(fx->d, "", c1, ROLE_TECHNICIAN, NULL), CP_ERR_INVALID);
    assert_int_equal(user_try(fx->d, "nobody", 999, ROLE_TECHNICIAN, NULL), CP_ERR_NOT_FOUND);
    memset(&u, 0, sizeof u);
    snprintf(u.username, sizeof u.username, "plain");
    u.institution_id = c1;
    assert_int_equal(directory_user_create(fx->d, &u, "plaintext", NULL), CP_ERR_INVALID);
    u.title = 5;
    assert_int_equal(directory_user_create(fx->d, &u, hash, NULL), CP_ERR_INVALID);

    assert_int_equal(directory_user_by_name(fx->d, "Dr.Wang", &u, NULL), CP_OK);
    assert_int_equal(u.id, rad);
    assert_int_equal(u.roles, ROLE_RADIOLOGIST | ROLE_REVIEWER);
    assert_string_equal(u.display_name, "Dr dr.wang");
    assert_false(u.totp_enabled);
    assert_true(u.created_us > 0);
    assert_int_equal(directory_user_by_name(fx->d, "ghost", &u, NULL), CP_ERR_NOT_FOUND);

    assert_int_equal(directory_user_password(fx->d, rad, stored, sizeof stored, NULL), CP_OK);
    assert_true(credential_password_verify(stored, "fixture pass 1"));
    assert_int_equal(directory_user_password(fx->d, rad, stored, 10, NULL), CP_ERR_LIMIT);

    /* Listings: everyone, or the users of some institutions. */
    assert_int_equal(directory_user_list(fx->d, NULL, 0, see_user, &s, NULL), CP_OK);
    assert_int_equal(s.n, 5);
    s.n = 0;
    one[0] = k1;
    assert_int_equal(directory_user_list(fx->d, one, 1, see_user, &s, NULL), CP_OK);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.ids[0], tech);
    s.n = 0;
    assert_int_equal(directory_user_list(fx->d, one, 0, see_user, &s, NULL), CP_OK);
    assert_int_equal(s.n, 0);

    /* An update keeps the roles and the password. */
    assert_int_equal(directory_user_get(fx->d, tech, &u, NULL), CP_OK);
    u.institution_id = h1;
    u.disabled = true;
    u.title = 2;
    u.may_self_approve = true;
    assert_int_equal(directory_user_update(fx->d, &u, NULL), CP_OK);
    assert_int_equal(directory_user_get(fx->d, tech, &u, NULL), CP_OK);
    assert_int_equal(u.institution_id, h1);
    assert_true(u.disabled);
    assert_true(u.may_self_approve);
    assert_int_equal(u.title, 2);
    assert_int_equal(u.roles, ROLE_TECHNICIAN | ROLE_INSTITUTION_ADMIN);
    u.id = 999;
    assert_int_equal(directory_user_update(fx->d, &u, NULL), CP_ERR_NOT_FOUND);
}

static void test_profile_version(void **state)
{
    fixture *fx = *state;
    directory_institution inst;
    directory_qualification q = { "CT", "HEAD" };
    directory_contract c;
    directory_user u;
    int64_t c1, rad, tech, v;

    c1 = inst_add(fx->d, "C1", DIRECTORY_CENTRE, 0);
    rad = user_add(fx->d, "rad", c1, ROLE_RADIOLOGIST);
    tech = user_add(fx->d, "tech", c1, ROLE_TECHNICIAN);
    assert_int_equal(version_of(fx->d, rad), 1);

    assert_int_equal(directory_user_set_roles(fx->d, rad, ROLE_RADIOLOGIST | ROLE_REVIEWER,
                                              NULL), CP_OK);
    assert_int_equal(version_of(fx->d, rad), 2);
    assert_int_equal(directory_user_get(fx->d, rad, &u, NULL), CP_OK);
    assert_int_equal(u.profile_version, 2);
    assert_int_equal(directory_user_update(fx->d, &u, NULL), CP_OK);
    assert_int_equal(version_of(fx->d, rad), 3);
    assert_int_equal(directory_user_set_password(fx->d, rad, hash, NULL), CP_OK);
    assert_int_equal(version_of(fx->d, rad), 4);
    assert_int_equal(directory_qualifications_set(fx->d, rad, &q, 1, NULL), CP_OK);
    assert_int_equal(version_of(fx->d, rad), 5);
    memset(&c, 0, sizeof c);
    c.user_id = rad;
    c.requesting_id = c1;
    c.reading_id = c1;
    assert_int_equal(directory_contract_create(fx->d, &c, NULL), CP_OK);
    assert_int_equal(version_of(fx->d, rad), 6);
    c.revoked = true;
    assert_int_equal(directory_contract_update(fx->d, &c, NULL), CP_OK);
    assert_int_equal(version_of(fx->d, rad), 7);

    /* The technician was not touched; an institution change reaches everyone. */
    assert_int_equal(version_of(fx->d, tech), 1);
    assert_int_equal(directory_institution_get(fx->d, c1, &inst, NULL), CP_OK);
    inst.disabled = true;
    assert_int_equal(directory_institution_update(fx->d, &inst, NULL), CP_OK);
    assert_int_equal(version_of(fx->d, tech), 2);
    assert_int_equal(version_of(fx->d, rad), 8);

    /* A failed change leaves the version alone. */
    assert_int_equal(directory_user_set_roles(fx->d, tech, ROLE_AUDIT_ADMIN | 1, NULL),
                     CP_ERR_FORBIDDEN);
    assert_int_equal(version_of(fx->d, tech), 2);
    assert_int_equal(directory_user_profile_version(fx->d, 999, &v, NULL), CP_ERR_NOT_FOUND);
}

static void test_qualifications(void **state)
{
    fixture *fx = *state;
    directory_qualification in[3] = { { "ct", "head" }, { "CR", "CHEST" }, { "*", "*" } };
    directory_qualification bad = { "C-T", "HEAD" };
    directory_qualification *out = NULL;
    int64_t c1, rad;
    size_t n = 0;

    c1 = inst_add(fx->d, "C1", DIRECTORY_CENTRE, 0);
    rad = user_add(fx->d, "rad", c1, ROLE_RADIOLOGIST);

    assert_int_equal(directory_qualifications_get(fx->d, rad, &out, &n, NULL), CP_OK);
    assert_int_equal(n, 0);
    cp_free(out);

    assert_int_equal(directory_qualifications_set(fx->d, rad, in, 3, NULL), CP_OK);
    assert_int_equal(directory_qualifications_get(fx->d, rad, &out, &n, NULL), CP_OK);
    assert_int_equal(n, 3);
    assert_string_equal(out[0].modality, "*");
    assert_string_equal(out[1].modality, "CR");
    assert_string_equal(out[1].body_part, "CHEST");
    assert_string_equal(out[2].modality, "CT");
    assert_string_equal(out[2].body_part, "HEAD");
    cp_free(out);

    /* A set replaces the list; a bad item changes nothing. */
    assert_int_equal(directory_qualifications_set(fx->d, rad, &bad, 1, NULL), CP_ERR_INVALID);
    assert_int_equal(directory_qualifications_set(fx->d, rad, in, 1, NULL), CP_OK);
    assert_int_equal(directory_qualifications_get(fx->d, rad, &out, &n, NULL), CP_OK);
    assert_int_equal(n, 1);
    cp_free(out);
    assert_int_equal(directory_qualifications_set(fx->d, 999, in, 1, NULL), CP_ERR_NOT_FOUND);
    assert_int_equal(directory_qualifications_get(fx->d, 999, &out, &n, NULL),
                     CP_ERR_NOT_FOUND);
}

static void test_contracts(void **state)
{
    fixture *fx = *state;
    directory_contract c, got;
    int64_t c1, k1, k2, rad, tech;
    seen s = { .n = 0 };

    c1 = inst_add(fx->d, "C1", DIRECTORY_CENTRE, 0);
    k1 = inst_add(fx->d, "K1", DIRECTORY_CLINIC, c1);
    k2 = inst_add(fx->d, "K2", DIRECTORY_CLINIC, c1);
    rad = user_add(fx->d, "rad", c1, ROLE_RADIOLOGIST);
    tech = user_add(fx->d, "tech", k1, ROLE_TECHNICIAN);

    memset(&c, 0, sizeof c);
    c.user_id = rad;
    c.requesting_id = k1;
    c.reading_id = c1;
    snprintf(c.start_date, sizeof c.start_date, "20260101");
    snprintf(c.modalities, sizeof c.modalities, "CR,DX,CT");
    snprintf(c.body_parts, sizeof c.body_parts, "CHEST");
    assert_int_equal(directory_contract_create(fx->d, &c, NULL), CP_OK);
    assert_true(c.id > 0);
    assert_int_equal(directory_contract_get(fx->d, c.id, &got, NULL), CP_OK);
    assert_int_equal(got.requesting_id, k1);
    assert_string_equal(got.start_date, "20260101");
    assert_string_equal(got.end_date, "");
    assert_string_equal(got.modalities, "CR,DX,CT");
    assert_false(got.revoked);

    /* Only readers get contracts, between institutions that exist, on real dates. */
    got = c;
    got.user_id = tech;
    assert_int_equal(directory_contract_create(fx->d, &got, NULL), CP_ERR_INVALID);
    got.user_id = 999;
    assert_int_equal(directory_contract_create(fx->d, &got, NULL), CP_ERR_NOT_FOUND);
    got.user_id = rad;
    got.requesting_id = 999;
    assert_int_equal(directory_contract_create(fx->d, &got, NULL), CP_ERR_NOT_FOUND);
    got.requesting_id = k2;
    snprintf(got.end_date, sizeof got.end_date, "20260230");
    assert_int_equal(directory_contract_create(fx->d, &got, NULL), CP_ERR_INVALID);
    snprintf(got.end_date, sizeof got.end_date, "20251231");
    assert_int_equal(directory_contract_create(fx->d, &got, NULL), CP_ERR_INVALID);
    snprintf(got.end_date, sizeof got.end_date, "20261231");
    snprintf(got.modalities, sizeof got.modalities, "CR,,DX");
    assert_int_equal(directory_contract_create(fx->d, &got, NULL), CP_ERR_INVALID);
    got.modalities[0] = '\0';
    assert_int_equal(directory_contract_create(fx->d, &got, NULL), CP_OK);

    /* Update and list. */
    c.revoked = true;
    snprintf(c.end_date, sizeof c.end_date, "20261231");
    assert_int_equal(directory_contract_update(fx->d, &c, NULL), CP_OK);
    assert_int_equal(directory_contract_get(fx->d, c.id, &got, NULL), CP_OK);
    assert_true(got.revoked);
    assert_string_equal(got.end_date, "20261231");

    assert_int_equal(directory_contract_list(fx->d, rad, 0, see_contract, &s, NULL), CP_OK);
    assert_int_equal(s.n, 2);
    s.n = 0;
    assert_int_equal(directory_contract_list(fx->d, 0, k2, see_contract, &s, NULL), CP_OK);
    assert_int_equal(s.n, 1);
    s.n = 0;
    assert_int_equal(directory_contract_list(fx->d, 0, c1, see_contract, &s, NULL), CP_OK);
    assert_int_equal(s.n, 2);
    s.n = 0;
    assert_int_equal(directory_contract_list(fx->d, tech, 0, see_contract, &s, NULL), CP_OK);
    assert_int_equal(s.n, 0);
    assert_int_equal(directory_contract_get(fx->d, 999, &got, NULL), CP_ERR_NOT_FOUND);
}

static void test_tokens(void **state)
{
    fixture *fx = *state;
    directory_api_token t, got;
    char text[64], old[64];
    int64_t k1;
    seen s = { .n = 0 };

    k1 = inst_add(fx->d, "K1", DIRECTORY_CLINIC, 0);
    memset(&t, 0, sizeof t);
    snprintf(t.name, sizeof t.name, "CT gateway");
    t.institution_id = k1;
    t.roles = ROLE_TECHNICIAN;
    assert_int_equal(directory_token_create(fx->d, &t, text, sizeof text, NULL), CP_OK);
    assert_true(t.id > 0);
    assert_int_equal(strlen(text), 48);
    assert_memory_equal(text, "cpat_", 5);

    assert_int_equal(directory_token_check(fx->d, text, &got, NULL), CP_OK);
    assert_int_equal(got.id, t.id);
    assert_int_equal(got.roles, ROLE_TECHNICIAN);
    assert_string_equal(got.name, "CT gateway");
    memcpy(old, text, sizeof old);
    old[10] = old[10] == 'x' ? 'y' : 'x';
    assert_int_equal(directory_token_check(fx->d, old, &got, NULL), CP_ERR_UNAUTHENTICATED);
    assert_int_equal(directory_token_check(fx->d, "", &got, NULL), CP_ERR_UNAUTHENTICATED);

    /* Never a separated role; never without a buffer for the text. */
    t.roles = ROLE_SYSTEM_ADMIN;
    assert_int_equal(directory_token_create(fx->d, &t, old, sizeof old, NULL),
                     CP_ERR_FORBIDDEN);
    t.roles = ROLE_TECHNICIAN;
    assert_int_equal(directory_token_create(fx->d, &t, old, 32, NULL), CP_ERR_LIMIT);
    t.institution_id = 999;
    assert_int_equal(directory_token_create(fx->d, &t, old, sizeof old, NULL),
                     CP_ERR_NOT_FOUND);

    /* Revoked and expired tokens are refused. */
    assert_int_equal(directory_token_revoke(fx->d, t.id, NULL), CP_OK);
    assert_int_equal(directory_token_check(fx->d, text, &got, NULL), CP_ERR_UNAUTHENTICATED);
    assert_int_equal(directory_token_revoke(fx->d, 999, NULL), CP_ERR_NOT_FOUND);

    t.institution_id = k1;
    t.expires_us = (int64_t)time(NULL) * 1000000 - 1000000;
    assert_int_equal(directory_token_create(fx->d, &t, text, sizeof text, NULL), CP_OK);
    assert_int_equal(directory_token_check(fx->d, text, &got, NULL), CP_ERR_UNAUTHENTICATED);
    t.expires_us = (int64_t)time(NULL) * 1000000 + 3600 * INT64_C(1000000);
    assert_int_equal(directory_token_create(fx->d, &t, text, sizeof text, NULL), CP_OK);
    assert_int_equal(directory_token_check(fx->d, text, &got, NULL), CP_OK);

    assert_int_equal(directory_token_list(fx->d, see_token, &s, NULL), CP_OK);
    assert_int_equal(s.n, 3);
}

static void test_aes(void **state)
{
    fixture *fx = *state;
    directory_ae ae, got;
    int64_t k1;
    seen s = { .n = 0 };

    k1 = inst_add(fx->d, "K1", DIRECTORY_CLINIC, 0);
    memset(&ae, 0, sizeof ae);
    snprintf(ae.title, sizeof ae.title, "CT_SCANNER_1");
    ae.institution_id = k1;
    snprintf(ae.host, sizeof ae.host, "10.0.0.5");
    ae.port = 104;
    snprintf(ae.allow, sizeof ae.allow, "store,query");
    assert_int_equal(directory_ae_put(fx->d, &ae, NULL), CP_OK);
    assert_int_equal(directory_ae_get(fx->d, "CT_SCANNER_1", &got, NULL), CP_OK);
    assert_int_equal(got.institution_id, k1);
    assert_string_equal(got.host, "10.0.0.5");
    assert_int_equal(got.port, 104);
    assert_string_equal(got.allow, "store,query");

    /* A put of the same title replaces it. */
    ae.port = 11112;
    snprintf(ae.allow, sizeof ae.allow, "store,query,retrieve");
    assert_int_equal(directory_ae_put(fx->d, &ae, NULL), CP_OK);
    snprintf(ae.title, sizeof ae.title, "AAA");
    ae.port = 1;
    ae.host[0] = '\0';
    ae.allow[0] = '\0';
    assert_int_equal(directory_ae_put(fx->d, &ae, NULL), CP_OK);
    assert_int_equal(directory_ae_list(fx->d, see_ae, &s, NULL), CP_OK);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.ids[0], 1);
    assert_int_equal(s.ids[1], 11112);

    ae.port = 70000;
    assert_int_equal(directory_ae_put(fx->d, &ae, NULL), CP_ERR_INVALID);
    ae.port = 104;
    snprintf(ae.allow, sizeof ae.allow, "store,delete");
    assert_int_equal(directory_ae_put(fx->d, &ae, NULL), CP_ERR_INVALID);
    ae.allow[0] = '\0';
    snprintf(ae.title, sizeof ae.title, "BAD\\AE");
    assert_int_equal(directory_ae_put(fx->d, &ae, NULL), CP_ERR_INVALID);
    snprintf(ae.title, sizeof ae.title, "OK");
    ae.institution_id = 999;
    assert_int_equal(directory_ae_put(fx->d, &ae, NULL), CP_ERR_NOT_FOUND);

    assert_int_equal(directory_ae_delete(fx->d, "AAA", NULL), CP_OK);
    assert_int_equal(directory_ae_delete(fx->d, "AAA", NULL), CP_ERR_NOT_FOUND);
    assert_int_equal(directory_ae_get(fx->d, "AAA", &got, NULL), CP_ERR_NOT_FOUND);
}

static void test_totp_sealed(void **state)
{
    fixture *fx = *state;
    char secret[33], back[65];
    uint8_t key[32], other[32];
    directory_user u;
    int64_t c1, rad;

    c1 = inst_add(fx->d, "C1", DIRECTORY_CENTRE, 0);
    rad = user_add(fx->d, "rad", c1, ROLE_RADIOLOGIST);
    assert_int_equal(credential_totp_secret(secret, sizeof secret), CP_OK);

    /* No key, no secrets. */
    assert_int_equal(directory_user_set_totp(fx->d, rad, secret, NULL), CP_ERR_CONFIG);
    assert_int_equal(directory_user_totp(fx->d, rad, back, sizeof back, NULL), CP_ERR_CONFIG);

    memset(key, 3, sizeof key);
    directory_set_seal_key(fx->d, key);
    assert_int_equal(directory_user_totp(fx->d, rad, back, sizeof back, NULL),
                     CP_ERR_NOT_FOUND);
    assert_int_equal(directory_user_set_totp(fx->d, rad, "not base32!", NULL), CP_ERR_INVALID);
    assert_int_equal(directory_user_set_totp(fx->d, rad, secret, NULL), CP_OK);
    assert_int_equal(directory_user_totp(fx->d, rad, back, sizeof back, NULL), CP_OK);
    assert_string_equal(back, secret);
    assert_int_equal(directory_user_get(fx->d, rad, &u, NULL), CP_OK);
    assert_true(u.totp_enabled);

    /* Another key cannot open it. */
    memset(other, 4, sizeof other);
    directory_set_seal_key(fx->d, other);
    assert_int_equal(directory_user_totp(fx->d, rad, back, sizeof back, NULL),
                     CP_ERR_MALFORMED);
    directory_set_seal_key(fx->d, key);

    assert_int_equal(directory_user_set_totp(fx->d, rad, "", NULL), CP_OK);
    assert_int_equal(directory_user_get(fx->d, rad, &u, NULL), CP_OK);
    assert_false(u.totp_enabled);
    assert_int_equal(directory_user_totp(fx->d, rad, back, sizeof back, NULL),
                     CP_ERR_NOT_FOUND);
}

/* A record for the index, enough for it to store. */
static void index_record(index_instance_record *r)
{
    memset(r, 0, sizeof *r);
    snprintf(r->patient.id, sizeof r->patient.id, "P1");
    snprintf(r->patient.issuer, sizeof r->patient.issuer, "K1");
    snprintf(r->study.uid, sizeof r->study.uid, "1.2.3");
    snprintf(r->study.date, sizeof r->study.date, "20260101");
    snprintf(r->series.uid, sizeof r->series.uid, "1.2.3.4");
    snprintf(r->series.modality, sizeof r->series.modality, "CT");
    snprintf(r->instance.sop_uid, sizeof r->instance.sop_uid, "1.2.3.4.5");
    snprintf(r->instance.sop_class_uid, sizeof r->instance.sop_class_uid,
             "1.2.840.10008.5.1.4.1.1.2");
    snprintf(r->instance.blob_key, sizeof r->instance.blob_key, "b/1.dcm");
    memset(r->instance.hash, 1, sizeof r->instance.hash);
    snprintf(r->instance.source, sizeof r->instance.source, "CT1");
    r->instance.institution_id = 1;
    r->instance.received_us = 1000;
}

static void test_shared_file_and_reopen(void **state)
{
    fixture *fx = *state;
    index_instance_record rec;
    index_put_result res;
    directory_user u;
    directory_ae ae;
    index_db *idx = NULL;
    int64_t c1, rad, seq = 0;
    int version = 0;
    char text[64];
    directory_api_token t;

    /* The index opens the same file and works beside the directory. */
    assert_int_equal(index_open_sqlite(fx->path, &idx, NULL), CP_OK);
    assert_int_equal(index_schema_version(idx, &version, NULL), CP_OK);
    assert_true(version > 0);
    index_record(&rec);
    assert_int_equal(index_put_instance(idx, &rec, 0, &res, NULL), CP_OK);

    c1 = inst_add(fx->d, "C1", DIRECTORY_CENTRE, 0);
    rad = user_add(fx->d, "rad", c1, ROLE_RADIOLOGIST);
    memset(&t, 0, sizeof t);
    snprintf(t.name, sizeof t.name, "gateway");
    t.institution_id = c1;
    t.roles = ROLE_TECHNICIAN;
    assert_int_equal(directory_token_create(fx->d, &t, text, sizeof text, NULL), CP_OK);
    memset(&ae, 0, sizeof ae);
    snprintf(ae.title, sizeof ae.title, "MR1");
    ae.institution_id = c1;
    assert_int_equal(directory_ae_put(fx->d, &ae, NULL), CP_OK);
    assert_int_equal(index_last_change(idx, &seq, NULL), CP_OK);
    assert_true(seq > 0);
    index_destroy(idx);

    /* Everything is there after both are closed and opened again. */
    directory_close(fx->d);
    fx->d = NULL;
    assert_int_equal(directory_open_sqlite(fx->path, &fx->d, NULL), CP_OK);
    assert_int_equal(index_open_sqlite(fx->path, &idx, NULL), CP_OK);
    assert_int_equal(index_last_change(idx, &seq, NULL), CP_OK);
    assert_true(seq > 0);
    index_destroy(idx);

    assert_int_equal(directory_user_get(fx->d, rad, &u, NULL), CP_OK);
    assert_string_equal(u.username, "rad");
    assert_int_equal(directory_token_check(fx->d, text, NULL, NULL), CP_OK);
    assert_int_equal(directory_ae_get(fx->d, "MR1", &ae, NULL), CP_OK);
    assert_int_equal(ae.institution_id, c1);
    assert_int_equal(user_try(fx->d, "RAD", c1, ROLE_TECHNICIAN, NULL), CP_ERR_EXISTS);
}

/* --- several threads on one directory ------------------------------------------ */

#define THREADS 4
#define PER_THREAD 10

typedef struct worker {
    directory *d;
    int n;
    int failures;
} worker;

static cp_status count_institution(void *ctx, const directory_institution *i)
{
    (void)i;
    (*(size_t *)ctx)++;
    return CP_OK;
}

static void *work(void *arg)
{
    worker *w = arg;

    for (int i = 0; i < PER_THREAD; i++) {
        directory_institution inst;
        size_t seen_count = 0;
        char name[16];

        memset(&inst, 0, sizeof inst);
        snprintf(inst.code, sizeof inst.code, "T%d_%d", w->n, i);
        snprintf(inst.name, sizeof inst.name, "Thread %d", w->n);
        inst.kind = DIRECTORY_CLINIC;
        if (directory_institution_create(w->d, &inst, NULL) != CP_OK)
            w->failures++;
        snprintf(name, sizeof name, "u%d_%d", w->n, i);
        if (user_try(w->d, name, inst.id, ROLE_TECHNICIAN, NULL) != CP_OK)
            w->failures++;
        if (directory_institution_list(w->d, count_institution, &seen_count, NULL) != CP_OK ||
            seen_count == 0)
            w->failures++;
    }
    return NULL;
}

static void test_threads(void **state)
{
    fixture *fx = *state;
    pthread_t threads[THREADS];
    worker workers[THREADS];
    size_t total = 0;

    for (int i = 0; i < THREADS; i++) {
        workers[i] = (worker){ fx->d, i, 0 };
        assert_int_equal(pthread_create(&threads[i], NULL, work, &workers[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(threads[i], NULL), 0);
        assert_int_equal(workers[i].failures, 0);
    }
    assert_int_equal(directory_institution_list(fx->d, count_institution, &total, NULL),
                     CP_OK);
    assert_int_equal(total, THREADS * PER_THREAD);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test_setup_teardown(test_institution_tree, setup, teardown),
        cmocka_unit_test_setup_teardown(test_users_and_separation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_profile_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_qualifications, setup, teardown),
        cmocka_unit_test_setup_teardown(test_contracts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tokens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_aes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_totp_sealed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shared_file_and_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
    };

    return cmocka_run_group_tests(tests, group_setup, NULL);
}
