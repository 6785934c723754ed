/*
 * session.h - signing in and knowing who asks: logins checked against the
 * directory (password, lockout, second factor), sessions kept in Redis,
 * and the principal (policy.h) behind a session, an API token, the service
 * token or a DICOM application entity, built from the directory and cached
 * in Redis.
 *
 * Keys (in the kv's namespace):
 *   sess:<token hash>      hash: user id, created, absolute expiry, peer,
 *                          enrol_only; EXPIRE = idle timeout, renewed on use
 *   usess:<user id>        set of that user's session hashes (to end them all)
 *   prof:<user id>         the principal as JSON; dropped on every change
 *                          (session_invalidate) and checked against the
 *                          directory's profile_version at most every
 *                          SESSION_PROFILE_CHECK_S seconds
 *   fail:<username>        failed logins in the window (INCR + EXPIRE)
 *   lock:<username>        present while locked out (SET EX)
 *   totp:<user id>         the last TOTP step used (no code works twice)
 * Added with session.c:
 *   totpp:<user id>        a TOTP secret begun but not confirmed (ten minutes)
 *   profgen                the generation of every cached principal;
 *                          session_invalidate(0) bumps it
 *   tok:<token hash>       an API token's principal, cached for at most
 *                          SESSION_TOKEN_CACHE_S (30) seconds: a revoked or
 *                          expired API token may keep working that long
 * Session tokens are "cps_" + 43 base64url characters; Redis holds only
 * their BLAKE2b hash, never the token.
 *
 * When Redis is away, every call that needs it fails with
 * CP_ERR_UNAVAILABLE (a request then gets 503), and works again once Redis
 * is back, without a restart.
 */
#ifndef CP_AUTH_SESSION_H
#define CP_AUTH_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/directory.h"
#include "auth/policy.h"
#include "core/status.h"
#include "kv/kv.h"

typedef struct session_service session_service;

typedef struct session_config {
    directory *dir;                     /* not owned */
    kv *kv;                             /* not owned */
    unsigned idle_s;                    /* 0: 30 minutes */
    unsigned absolute_s;                /* 0: 12 hours */
    unsigned lock_after;                /* failures before a lockout; 0: 5 */
    unsigned lock_window_s;             /* failures counted over; 0: 15 minutes */
    unsigned lock_s;                    /* lockout length; 0: 15 minutes */
    /* A second factor is required of admins (every *_ADMIN role) / doctors. */
    bool mfa_admins;
    bool mfa_doctors;
    const char *service_token;          /* NULL: none */
    const char *totp_issuer;            /* NULL: "cloudpacs" */
    int64_t (*now_us)(void);            /* NULL: the real clock (tests pass theirs) */
    /*
     * How long (ms) a resolved session is reused in this process without
     * asking Redis (0: never; the service uses SESSION_LOCAL_MS). A session
     * ended elsewhere keeps working here for at most that long, and a
     * request in that window is answered even while Redis is away.
     */
    unsigned local_ms;
} session_config;

cp_status session_service_create(const session_config *cfg, session_service **out,
                                  cp_error *err);
void session_service_destroy(session_service *s);

typedef enum session_login_result {
    SESSION_LOGIN_OK = 0,
    SESSION_LOGIN_BAD_CREDENTIALS,      /* unknown user or wrong password */
    SESSION_LOGIN_LOCKED,               /* too many failures; retry_after_s says */
    SESSION_LOGIN_DISABLED,
    SESSION_LOGIN_MFA_REQUIRED,         /* right password; a TOTP code is needed */
    SESSION_LOGIN_MFA_BAD,              /* wrong or reused code (counts as a failure) */
} session_login_result;

typedef struct session_login_outcome {
    session_login_result result;
    int64_t user_id;                    /* when known (for the audit trail) */
    unsigned retry_after_s;             /* for LOCKED */
    bool enrol_only;                    /* OK, but a second factor must be enrolled first */
    char token[64];                     /* for OK: the session token, shown once */
    int64_t expires_us;                 /* absolute expiry */
} session_login_outcome;

/*
 * Checks a login (totp_code NULL or "" when none was given) and on success
 * opens a session. A status other than CP_OK is a failure of the service
 * (CP_ERR_UNAVAILABLE when Redis is away), not of the login, which is in
 * out->result.
 */
cp_status session_login(session_service *s, const char *username, const char *password,
                        const char *totp_code, const char *peer, session_login_outcome *out,
                        cp_error *err);

/*
 * The principal behind a bearer token: a session token (renewing its idle
 * expiry), an API token ("cpat_..."), or the service token. CP_ERR_UNAUTHENTICATED
 * for anything unknown, expired or revoked. The caller frees *out.
 */
cp_status session_resolve(session_service *s, const char *token, const char *peer,
                          principal **out, cp_error *err);

/* The principal of a DICOM application entity of the directory (or NOT_FOUND). */
cp_status session_resolve_ae(session_service *s, const char *ae_title, const char *peer,
                             principal **out, cp_error *err);

/*
 * A user proving who they are without a session (DICOM user identity
 * negotiation, PS3.7 D.3.3.7): password checked, lockout counted, no
 * second factor. CP_ERR_UNAUTHENTICATED when refused.
 */
cp_status session_resolve_password(session_service *s, const char *username,
                                   const char *password, const char *peer, principal **out,
                                   cp_error *err);

/* Ends one session. Unknown tokens are fine. */
cp_status session_logout(session_service *s, const char *token, cp_error *err);

/* Ends every session of a user. */
cp_status session_end_user(session_service *s, int64_t user_id, cp_error *err);

/* Drops a user's cached principal (0: every user's), after a change. */
cp_status session_invalidate(session_service *s, int64_t user_id, cp_error *err);

/* Clears a lockout and the failure count. */
cp_status session_unlock(session_service *s, const char *username, cp_error *err);

/*
 * Second-factor enrolment: begin makes a secret (kept pending in Redis for
 * ten minutes) and returns it with its otpauth URI; confirm checks a code
 * against it and stores it in the directory, which also ends enrol_only for
 * this session.
 */
cp_status session_totp_begin(session_service *s, const principal *p, char *secret, size_t scap,
                             char *uri, size_t ucap, cp_error *err);
cp_status session_totp_confirm(session_service *s, const principal *p, const char *token,
                               const char *code, cp_error *err);

#endif
