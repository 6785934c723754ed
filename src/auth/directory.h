/*
 * directory.h - who is who: institutions in a tree, users and their roles,
 * radiologists' qualifications and contracts, API tokens for machines and
 * the DICOM application entities of each institution. Kept in the index
 * database (SQLite by default: the same file as the index, its own tables
 * and its own migration list in the table auth_schema_version).
 *
 * A directory is safe to use from several threads. It stores no password
 * or token in the clear: passwords as Argon2id strings (credential.h), API
 * tokens and TOTP secrets as described by each function. Every change bumps
 * the user's (or, for institutions, every user's) profile_version, which is
 * how cached profiles (session.h) learn that they are stale.
 *
 * Roles follow the field: clinical roles (technician, radiologist,
 * reviewer), the administrator of an institution (its subtree), and the
 * three separate administrators of China's level-3 protection scheme
 * (system, security, audit). No user holds two of those three, nor one of
 * them together with any other role: directory_user_set_roles refuses it
 * with CP_ERR_FORBIDDEN. Who may change what is policy.h's business; the
 * directory only keeps the separation itself.
 */
#ifndef CP_AUTH_DIRECTORY_H
#define CP_AUTH_DIRECTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct directory directory;

/* Text sizes (bytes, without the NUL). */
#define DIRECTORY_CODE_MAX      32      /* institution code: [A-Za-z0-9_-]+ */
#define DIRECTORY_NAME_MAX      200     /* display names, UTF-8 */
#define DIRECTORY_USERNAME_MAX  64      /* [A-Za-z0-9._@-]+, case-insensitive unique */
#define DIRECTORY_HASH_MAX      160     /* an Argon2id string */
#define DIRECTORY_LIST_MAX      128     /* "CR,DX,CT" and "CHEST,HEAD" lists */
#define DIRECTORY_SECRET_MAX    64      /* a base32 TOTP secret */

typedef enum directory_institution_kind {
    DIRECTORY_CENTRE = 1,               /* a reading centre */
    DIRECTORY_HOSPITAL = 2,
    DIRECTORY_CLINIC = 3,
} directory_institution_kind;

/* Role bits. */
typedef enum directory_role {
    ROLE_INSTITUTION_ADMIN = 1u << 0,
    ROLE_TECHNICIAN = 1u << 1,
    ROLE_RADIOLOGIST = 1u << 2,
    ROLE_REVIEWER = 1u << 3,
    ROLE_SYSTEM_ADMIN = 1u << 4,
    ROLE_SECURITY_ADMIN = 1u << 5,
    ROLE_AUDIT_ADMIN = 1u << 6,
    /*
     * Added: a self-service print kiosk (api_kiosk.c). It holds no other
     * role and the policy gives it no action: it only prints a patient's
     * released reports once the patient has identified at it.
     */
    ROLE_KIOSK = 1u << 7,
} directory_role;

#define ROLE_SEPARATED (ROLE_SYSTEM_ADMIN | ROLE_SECURITY_ADMIN | ROLE_AUDIT_ADMIN)
#define ROLE_ALL       0xFFu

/* "institution_admin", "technician", ..., "audit_admin"; NULL if not one role bit. */
const char *directory_role_name(unsigned role);

/* A role by name; 0 if unknown. */
unsigned directory_role_parse(const char *name);

/* "radiologist,reviewer" from a mask into out; CP_ERR_LIMIT if it does not fit. */
cp_status directory_roles_format(unsigned roles, char *out, size_t cap);

/* A mask from "radiologist,reviewer"; CP_ERR_INVALID names the unknown role. */
cp_status directory_roles_parse(const char *list, unsigned *roles, cp_error *err);

/* "centre", "hospital", "clinic" and back (0 if unknown). */
const char *directory_kind_name(directory_institution_kind kind);
directory_institution_kind directory_kind_parse(const char *name);

typedef struct directory_institution {
    int64_t id;                         /* > 0; assigned on creation */
    int64_t parent_id;                  /* 0 for a root */
    directory_institution_kind kind;
    char code[DIRECTORY_CODE_MAX + 1];  /* unique, stable, used in AE and CLI */
    char name[DIRECTORY_NAME_MAX + 1];
    bool disabled;
    int64_t created_us;
} directory_institution;

typedef struct directory_user {
    int64_t id;
    char username[DIRECTORY_USERNAME_MAX + 1];
    char display_name[DIRECTORY_NAME_MAX + 1];
    int64_t institution_id;             /* the institution the user belongs to */
    unsigned roles;                     /* directory_role bits */
    /*
     * A radiologist's title, for review rules: 0 none, 1 resident,
     * 2 attending, 3 associate chief, 4 chief.
     */
    int title;
    bool may_self_approve;
    bool disabled;
    bool totp_enabled;                  /* a second factor is enrolled */
    int64_t profile_version;            /* bumped on every change that affects rights */
    int64_t created_us;
    int64_t password_changed_us;
} directory_user;

/* One qualification: what a radiologist may read. "*" matches everything. */
typedef struct directory_qualification {
    char modality[17];                  /* "CR", "CT", "*" */
    char body_part[17];                 /* "CHEST", "HEAD", "*" */
} directory_qualification;

/*
 * A contract: the radiologist user_id reads for requesting_id (and its
 * subtree) under the registration of reading_id, from start to end (dates
 * YYYYMMDD, end inclusive; "" open), for the listed modalities and body
 * parts ("" means every one).
 */
typedef struct directory_contract {
    int64_t id;
    int64_t user_id;
    int64_t requesting_id;
    int64_t reading_id;
    char start_date[9];
    char end_date[9];
    char modalities[DIRECTORY_LIST_MAX + 1];
    char body_parts[DIRECTORY_LIST_MAX + 1];
    bool revoked;
} directory_contract;

/*
 * An API token for a machine (a modality gateway, a HIS). The token itself
 * ("cpat_" and 43 base64url characters) is shown once, at creation; the
 * directory keeps its BLAKE2b hash.
 */
typedef struct directory_api_token {
    int64_t id;
    char name[DIRECTORY_NAME_MAX + 1];
    int64_t institution_id;
    unsigned roles;                     /* never a separated admin role */
    int64_t created_us;
    int64_t expires_us;                 /* 0: never */
    bool revoked;
} directory_api_token;

/* A DICOM application entity and the institution it sends for. */
typedef struct directory_ae {
    char title[17];
    int64_t institution_id;
    char host[64];                      /* "" any; used for C-MOVE destinations too */
    int port;
    char allow[64];                     /* "store,query,retrieve" */
} directory_ae;

/* --- opening ------------------------------------------------------------- */

/*
 * Opens the directory in the SQLite database at path (creating its tables),
 * with WAL and a busy timeout, beside an index that may use the same file.
 */
cp_status directory_open_sqlite(const char *path, directory **out, cp_error *err);
void directory_close(directory *d);

/*
 * The key TOTP secrets are sealed with (credential_key_load). Until it is
 * set, directory_user_set_totp and directory_user_totp fail with
 * CP_ERR_CONFIG.
 */
void directory_set_seal_key(directory *d, const uint8_t key[32]);

/* --- institutions ---------------------------------------------------------- */

/*
 * Creates an institution; inst->id is set. CP_ERR_EXISTS for a taken code,
 * CP_ERR_NOT_FOUND for an unknown parent, CP_ERR_INVALID for a bad code.
 */
cp_status directory_institution_create(directory *d, directory_institution *inst,
                                       cp_error *err);

/* Updates name, kind, parent and disabled; refuses a cycle (CP_ERR_INVALID). */
cp_status directory_institution_update(directory *d, const directory_institution *inst,
                                       cp_error *err);

cp_status directory_institution_get(directory *d, int64_t id, directory_institution *out,
                                    cp_error *err);
cp_status directory_institution_by_code(directory *d, const char *code,
                                        directory_institution *out, cp_error *err);

typedef cp_status (*directory_institution_fn)(void *ctx, const directory_institution *inst);

/* Every institution, parents before children, by id within a level. */
cp_status directory_institution_list(directory *d, directory_institution_fn fn, void *ctx,
                                     cp_error *err);

/*
 * The ids of root_id and every institution below it into a new array
 * (caller frees with cp_free), root first.
 */
cp_status directory_institution_subtree(directory *d, int64_t root_id, int64_t **ids,
                                        size_t *count, cp_error *err);

/* --- users ----------------------------------------------------------------- */

/*
 * Creates a user with the given Argon2id password hash (credential.h);
 * user->id, created_us and profile_version are set. CP_ERR_EXISTS for a
 * taken username; CP_ERR_FORBIDDEN when the roles break the separation.
 */
cp_status directory_user_create(directory *d, directory_user *user, const char *password_hash,
                                cp_error *err);

/* Updates display name, institution, title, may_self_approve and disabled. */
cp_status directory_user_update(directory *d, const directory_user *user, cp_error *err);

/* Replaces the roles; CP_ERR_FORBIDDEN when they break the separation. */
cp_status directory_user_set_roles(directory *d, int64_t user_id, unsigned roles,
                                   cp_error *err);

cp_status directory_user_set_password(directory *d, int64_t user_id, const char *password_hash,
                                      cp_error *err);

/* The stored hash, for login. */
cp_status directory_user_password(directory *d, int64_t user_id, char *hash, size_t cap,
                                  cp_error *err);

/*
 * The TOTP secret (base32), sealed in the database with the seal key
 * (credential_seal); "" clears it and the enrolment.
 */
cp_status directory_user_set_totp(directory *d, int64_t user_id, const char *secret_base32,
                                  cp_error *err);
cp_status directory_user_totp(directory *d, int64_t user_id, char *secret_base32, size_t cap,
                              cp_error *err);

cp_status directory_user_get(directory *d, int64_t id, directory_user *out, cp_error *err);
cp_status directory_user_by_name(directory *d, const char *username, directory_user *out,
                                 cp_error *err);

typedef cp_status (*directory_user_fn)(void *ctx, const directory_user *user);

/* Users of the listed institutions (NULL: all), by id. */
cp_status directory_user_list(directory *d, const int64_t *institutions, size_t count,
                              directory_user_fn fn, void *ctx, cp_error *err);

/* The profile version now (cheap; what a cached profile is checked against). */
cp_status directory_user_profile_version(directory *d, int64_t user_id, int64_t *version,
                                         cp_error *err);

/* --- qualifications and contracts -------------------------------------------- */

cp_status directory_qualifications_set(directory *d, int64_t user_id,
                                       const directory_qualification *q, size_t count,
                                       cp_error *err);

/* Into a new array (cp_free). */
cp_status directory_qualifications_get(directory *d, int64_t user_id,
                                       directory_qualification **out, size_t *count,
                                       cp_error *err);

/* Creates a contract; c->id is set. The user must be a radiologist or reviewer. */
cp_status directory_contract_create(directory *d, directory_contract *c, cp_error *err);
cp_status directory_contract_update(directory *d, const directory_contract *c, cp_error *err);
cp_status directory_contract_get(directory *d, int64_t id, directory_contract *out,
                                 cp_error *err);

typedef cp_status (*directory_contract_fn)(void *ctx, const directory_contract *c);

/* Contracts of a user (user_id > 0) or with an institution (institution_id > 0). */
cp_status directory_contract_list(directory *d, int64_t user_id, int64_t institution_id,
                                  directory_contract_fn fn, void *ctx, cp_error *err);

/* --- API tokens ---------------------------------------------------------------- */

/*
 * Creates a token; t->id is set and the token text (to show once) written
 * to token_out (at least 64 bytes).
 */
cp_status directory_token_create(directory *d, directory_api_token *t, char *token_out,
                                 size_t cap, cp_error *err);

/* The token that text is, if it exists, is not revoked and has not expired. */
cp_status directory_token_check(directory *d, const char *token_text, directory_api_token *out,
                                cp_error *err);

cp_status directory_token_revoke(directory *d, int64_t id, cp_error *err);

typedef cp_status (*directory_token_fn)(void *ctx, const directory_api_token *t);
cp_status directory_token_list(directory *d, directory_token_fn fn, void *ctx, cp_error *err);

/* --- application entities --------------------------------------------------------- */

cp_status directory_ae_put(directory *d, const directory_ae *ae, cp_error *err);
cp_status directory_ae_get(directory *d, const char *title, directory_ae *out, cp_error *err);
cp_status directory_ae_delete(directory *d, const char *title, cp_error *err);

typedef cp_status (*directory_ae_fn)(void *ctx, const directory_ae *ae);
cp_status directory_ae_list(directory *d, directory_ae_fn fn, void *ctx, cp_error *err);

#endif
