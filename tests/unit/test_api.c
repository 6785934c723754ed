/*
 * test_api.c - the REST API end to end (docs/api.md): a redis-server of
 * its own on a Unix socket, a directory, audit trail and index in a
 * temporary SQLite file, a session service, and an http_server on
 * 127.0.0.1 with api_authenticate as its hook, driven by a plain-socket
 * HTTP/1.1 client (one connection per request, read to its close). It
 * covers logins (good, bad, locked, disabled, second factor, enrolment),
 * cookie against bearer and the X-Requested-With guard, the permissions
 * of each role, a table of who may change what, the separation of the
 * three admin roles, the audit trail's reading, export and verification,
 * and a Redis that goes away and comes back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "auth/credential.h"
#include "core/alloc.h"
#include "core/buf.h"

#define PASSWORD      "Passw0rd!x"
#define SERVICE_TOKEN "svc-0123456789-abcdefghijklmnop"

/* Who acts in the table of rights. */
enum { SYS, SEC, AUD, HADM, CADM, TECH, RAD, SVC, WHO_COUNT };

static const char *const who_names[WHO_COUNT] = {
    "sysadmin", "secadmin", "auditadmin", "hadmin", "cadmin", "tech", "rad", "service",
};

static struct {
    char dir[64];
    char sock[128];
    char db[128];
    pid_t redis;
    kv *kv;
    directory *d;
    index_db *idx;
    audit_log *audit;
    session_service *sessions;
    api_service *api;
    http_server *srv;
    int64_t centre, hospital, clinic;
    int64_t ids[WHO_COUNT];
    char tokens[WHO_COUNT][80];
    int64_t reviewer, locky, disabled, mfa_user, target_h, target_c, target_c2;
    char mfa_secret[64];
    char rad_secret[64];
    unsigned counter;
} T;

/* --- redis-server ------------------------------------------------------------------- */

static bool socket_answers(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    bool ok;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        close(fd);
        return false;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

static pid_t redis_start(void)
{
    pid_t pid = fork();

    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);

        dup2(null, 1);
        dup2(null, 2);
        execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", T.sock,
               "--save", "", "--appendonly", "no", "--dir", T.dir, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; pid > 0 && i < 500 && !socket_answers(T.sock); i++)
        usleep(10000);
    return pid;
}

static void redis_stop(void)
{
    if (T.redis <= 0)
        return;
    kill(T.redis, SIGTERM);
    waitpid(T.redis, NULL, 0);
    T.redis = 0;
    unlink(T.sock);
}

/* --- the client ---------------------------------------------------------------------- */

typedef struct reply {
    int status;
    char *head;                         /* status line and headers */
    char *body;                         /* de-chunked, NUL-terminated */
    size_t body_len;
    json_t *json;                       /* the body parsed, or NULL */
} reply;

static void reply_free(reply *r)
{
    cp_free(r->head);
    cp_free(r->body);
    json_decref(r->json);
    memset(r, 0, sizeof(*r));
}

/* A response header's value, copied into out; false when absent. */
static bool header(const reply *r, const char *name, char *out, size_t cap)
{
    size_t n = strlen(name);

    for (const char *p = strchr(r->head, '\n'); p; p = strchr(p, '\n')) {
        p++;
        if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
            const char *v = p + n + 1;
            size_t len;

            while (*v == ' ')
                v++;
            len = strcspn(v, "\r\n");
            snprintf(out, cap, "%.*s", (int)len, v);
            return true;
        }
    }
    return false;
}

static void dechunk(const char *in, size_t len, cp_buf *out)
{
    const char *p = in, *end = in + len;

    while (p < end) {
        char *eol;
        size_t size = strtoul(p, &eol, 16);

        p = strstr(p, "\r\n");
        if (!p || size == 0)
            break;
        p += 2;
        if ((size_t)(end - p) < size)
            break;
        cp_buf_append(out, p, size);
        p += size + 2;
    }
}

/*
 * One request on its own connection. auth: "B <token>" for a bearer
 * token, "C <token>" for the cookie, NULL for none; xrw adds
 * X-Requested-With: cloudpacs.
 */
static reply call_full(const char *method, const char *path, const char *auth, bool xrw,
                       const char *body)
{
    struct sockaddr_in sa = { .sin_family = AF_INET };
    cp_buf req = CP_BUF_INIT, raw = CP_BUF_INIT, content = CP_BUF_INIT;
    char buf[16384], te[64];
    const char *sep;
    reply r = { 0 };
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ssize_t n;

    assert_true(fd >= 0);
    sa.sin_port = htons(http_server_port(T.srv));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);

    cp_buf_appendf(&req, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n", method,
                   path);
    if (auth && auth[0] == 'B')
        cp_buf_appendf(&req, "Authorization: Bearer %s\r\n", auth + 2);
    if (auth && auth[0] == 'C')
        cp_buf_appendf(&req, "Cookie: theme=dark; cloudpacs_session=%s\r\n", auth + 2);
    if (xrw)
        cp_buf_appendf(&req, "X-Requested-With: cloudpacs\r\n");
    if (body)
        cp_buf_appendf(&req, "Content-Type: application/json\r\nContent-Length: %zu\r\n",
                       strlen(body));
    cp_buf_appendf(&req, "\r\n%s", body ? body : "");
    for (size_t off = 0; off < req.len; off += (size_t)n) {
        n = send(fd, req.data + off, req.len - off, MSG_NOSIGNAL);
        if (n <= 0)
            break;
    }
    while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
        cp_buf_append(&raw, buf, (size_t)n);
    close(fd);
    cp_buf_free(&req);

    assert_non_null(raw.data);
    sep = strstr((char *)raw.data, "\r\n\r\n");
    assert_non_null(sep);
    r.status = atoi((char *)raw.data + 9);
    r.head = cp_strndup((char *)raw.data, (size_t)(sep - (char *)raw.data) + 2);
    sep += 4;
    if (header(&r, "Transfer-Encoding", te, sizeof(te)) && strcasecmp(te, "chunked") == 0)
        dechunk(sep, raw.len - (size_t)(sep - (char *)raw.data), &content);
    else
        cp_buf_append(&content, sep, raw.len - (size_t)(sep - (char *)raw.data));
    cp_buf_append_byte(&content, 0);
    r.body_len = content.len - 1;
    r.body = (char *)cp_buf_steal(&content, NULL);
    r.json = json_loads(r.body, 0, NULL);
    cp_buf_free(&raw);
    return r;
}

static reply call(const char *method, const char *path, int who, const char *body)
{
    char auth[128];

    snprintf(auth, sizeof(auth), "B %s", T.tokens[who]);
    return call_full(method, path, auth, false, body);
}

static const char *reason_of(const reply *r)
{
    const char *s = json_string_value(json_object_get(r->json, "reason"));

    return s ? s : "";
}

/* Logs in and copies the token; asserts a 200. */
static void login(const char *user, const char *code, char *token, size_t cap)
{
    char body[256];
    reply r;

    snprintf(body, sizeof(body), "{\"username\":\"%s\",\"password\":\"%s\"%s%s%s}", user,
             PASSWORD, code ? ",\"totp\":\"" : "", code ? code : "", code ? "\"" : "");
    r = call_full("POST", "/api/session", NULL, false, body);
    if (r.status != 200)
        fail_msg("login %s: %d %s", user, r.status, r.body);
    snprintf(token, cap, "%s", json_string_value(json_object_get(r.json, "token")));
    reply_free(&r);
}

static int login_status(const char *user, const char *password, const char *code,
                        char *reason, size_t cap)
{
    char body[256];
    reply r;
    int status;

    snprintf(body, sizeof(body), "{\"username\":\"%s\",\"password\":\"%s\"%s%s%s}", user,
             password, code ? ",\"totp\":\"" : "", code ? code : "", code ? "\"" : "");
    r = call_full("POST", "/api/session", NULL, false, body);
    status = r.status;
    snprintf(reason, cap, "%s", reason_of(&r));
    reply_free(&r);
    return status;
}

static void totp_now(const char *secret, char code[8])
{
    assert_int_equal(credential_totp_code(secret, time(NULL), code, 8), CP_OK);
}

/* --- the world ---------------------------------------------------------------------- */

static int64_t add_institution(const char *code, directory_institution_kind kind,
                               int64_t parent)
{
    directory_institution inst = { .parent_id = parent, .kind = kind };

    snprintf(inst.code, sizeof(inst.code), "%s", code);
    snprintf(inst.name, sizeof(inst.name), "The %s", code);
    assert_int_equal(directory_institution_create(T.d, &inst, NULL), CP_OK);
    return inst.id;
}

static int64_t add_user(const char *name, int64_t inst, unsigned roles, bool disabled)
{
    char hash[CREDENTIAL_HASH_SIZE];
    directory_user u = { .institution_id = inst, .roles = roles };

    snprintf(u.username, sizeof(u.username), "%s", name);
    snprintf(u.display_name, sizeof(u.display_name), "User %s", name);
    assert_int_equal(credential_password_hash(PASSWORD, hash, sizeof(hash), NULL), CP_OK);
    assert_int_equal(directory_user_create(T.d, &u, hash, NULL), CP_OK);
    if (disabled) {
        u.disabled = true;
        assert_int_equal(directory_user_update(T.d, &u, NULL), CP_OK);
    }
    return u.id;
}

static void quiet_access_log(const http_access_entry *entry, void *ctx)
{
    (void)entry;
    (void)ctx;
}

static void open_services(void)
{
    kv_config kc = { 0 };
    session_config sc = { 0 };
    api_config ac = { 0 };
    http_config hc = { 0 };
    char url[160];

    snprintf(url, sizeof(url), "unix://%s", T.sock);
    kc.url = url;
    assert_int_equal(kv_create(&kc, &T.kv, NULL), CP_OK);

    sc.dir = T.d;
    sc.kv = T.kv;
    sc.mfa_doctors = true;
    sc.service_token = SERVICE_TOKEN;
    assert_int_equal(session_service_create(&sc, &T.sessions, NULL), CP_OK);

    ac.dir = T.d;
    ac.sessions = T.sessions;
    ac.audit = T.audit;
    ac.idx = T.idx;
    ac.kv = T.kv;
    ac.audit_source = "TESTPACS";
    assert_int_equal(api_create(&ac, &T.api, NULL), CP_OK);

    hc.bind_address = "127.0.0.1";
    hc.threads = 2;
    hc.auth = api_authenticate;
    hc.auth_ctx = T.api;
    hc.access_log = quiet_access_log;
    assert_int_equal(http_server_create(&hc, &T.srv, NULL), CP_OK);
    assert_int_equal(api_register(T.api, T.srv, NULL), CP_OK);
    assert_int_equal(http_server_start(T.srv, NULL), CP_OK);
}

static int setup(void **state)
{
    uint8_t key[32];
    char code[8];

    (void)state;
    signal(SIGPIPE, SIG_IGN);
    snprintf(T.dir, sizeof(T.dir), "/tmp/cpapi-XXXXXX");
    if (!mkdtemp(T.dir))
        return -1;
    snprintf(T.sock, sizeof(T.sock), "%s/redis.sock", T.dir);
    snprintf(T.db, sizeof(T.db), "%s/index.sqlite", T.dir);
    T.redis = redis_start();
    if (T.redis <= 0 || !socket_answers(T.sock))
        return -1;

    if (credential_init() != CP_OK || index_open_sqlite(T.db, &T.idx, NULL) != CP_OK ||
        directory_open_sqlite(T.db, &T.d, NULL) != CP_OK ||
        audit_open_sqlite(T.db, &T.audit, NULL) != CP_OK)
        return -1;
    for (size_t i = 0; i < sizeof(key); i++)
        key[i] = (uint8_t)(i * 7 + 3);
    directory_set_seal_key(T.d, key);

    T.centre = add_institution("CENTRE", DIRECTORY_CENTRE, 0);
    T.hospital = add_institution("HOSP", DIRECTORY_HOSPITAL, 0);
    T.clinic = add_institution("CLINIC", DIRECTORY_CLINIC, T.hospital);
    T.ids[SYS] = add_user("sysadmin", T.centre, ROLE_SYSTEM_ADMIN, false);
    T.ids[SEC] = add_user("secadmin", T.centre, ROLE_SECURITY_ADMIN, false);
    T.ids[AUD] = add_user("auditadmin", T.centre, ROLE_AUDIT_ADMIN, false);
    T.ids[HADM] = add_user("hadmin", T.hospital, ROLE_INSTITUTION_ADMIN, false);
    T.ids[CADM] = add_user("cadmin", T.centre, ROLE_INSTITUTION_ADMIN, false);
    T.ids[TECH] = add_user("tech", T.clinic, ROLE_TECHNICIAN, false);
    T.ids[RAD] = add_user("rad", T.centre, ROLE_RADIOLOGIST, false);
    T.reviewer = add_user("reviewer", T.centre, ROLE_REVIEWER, false);
    T.locky = add_user("locky", T.hospital, ROLE_TECHNICIAN, false);
    T.disabled = add_user("gone", T.hospital, ROLE_TECHNICIAN, true);
    T.mfa_user = add_user("rad2", T.centre, ROLE_RADIOLOGIST, false);
    T.target_h = add_user("target_h", T.hospital, ROLE_TECHNICIAN, false);
    T.target_c = add_user("target_c", T.centre, 0, false);
    T.target_c2 = add_user("target_c2", T.centre, 0, false);
    credential_totp_secret(T.rad_secret, sizeof(T.rad_secret));
    credential_totp_secret(T.mfa_secret, sizeof(T.mfa_secret));
    if (directory_user_set_totp(T.d, T.ids[RAD], T.rad_secret, NULL) != CP_OK ||
        directory_user_set_totp(T.d, T.mfa_user, T.mfa_secret, NULL) != CP_OK)
        return -1;

    open_services();
    for (int w = 0; w < WHO_COUNT; w++) {
        if (w == SVC) {
            snprintf(T.tokens[w], sizeof(T.tokens[w]), "%s", SERVICE_TOKEN);
        } else if (w == RAD) {
            totp_now(T.rad_secret, code);
            login(who_names[w], code, T.tokens[w], sizeof(T.tokens[w]));
        } else {
            login(who_names[w], NULL, T.tokens[w], sizeof(T.tokens[w]));
        }
    }
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];

    (void)state;
    http_server_destroy(T.srv);
    api_destroy(T.api);
    session_service_destroy(T.sessions);
    kv_destroy(T.kv);
    audit_close(T.audit);
    directory_close(T.d);
    index_destroy(T.idx);
    redis_stop();
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", T.dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* --- logins ---------------------------------------------------------------------------- */

static void test_login(void **state)
{
    char reason[64], cookie[256];
    reply r;

    (void)state;
    r = call_full("POST", "/api/session", NULL, false,
                  "{\"username\":\"tech\",\"password\":\"" PASSWORD "\"}");
    assert_int_equal(r.status, 200);
    assert_true(strncmp(json_string_value(json_object_get(r.json, "token")), "cps_", 4) == 0);
    assert_true(json_is_false(json_object_get(r.json, "enrol_required")));
    assert_string_equal(json_string_value(json_object_get(json_object_get(r.json, "user"),
                                                          "username")), "tech");
    assert_non_null(strstr(json_string_value(json_object_get(r.json, "expires")), "T"));
    assert_true(header(&r, "Set-Cookie", cookie, sizeof(cookie)));
    assert_true(strncmp(cookie, "cloudpacs_session=cps_", 22) == 0);
    assert_non_null(strstr(cookie, "; Path=/; HttpOnly; SameSite=Strict"));
    assert_null(strstr(cookie, "Secure"));
    reply_free(&r);

    assert_int_equal(login_status("tech", "Wrong-pass1", NULL, reason, sizeof(reason)), 401);
    assert_string_equal(reason, "bad_credentials");
    assert_int_equal(login_status("nobody", PASSWORD, NULL, reason, sizeof(reason)), 401);
    assert_string_equal(reason, "bad_credentials");
    assert_int_equal(login_status("gone", PASSWORD, NULL, reason, sizeof(reason)), 403);
    assert_string_equal(reason, "disabled");

    r = call_full("POST", "/api/session", NULL, false, "{\"username\":1}");
    assert_int_equal(r.status, 400);
    assert_string_equal(reason_of(&r), "invalid");
    reply_free(&r);
    r = call_full("POST", "/api/session", NULL, false, "not json");
    assert_int_equal(r.status, 400);
    assert_string_equal(reason_of(&r), "bad_json");
    reply_free(&r);
}

static void test_login_too_large(void **state)
{
    char *big = cp_malloc(API_BODY_MAX + 100);
    reply r;

    (void)state;
    memset(big, ' ', API_BODY_MAX + 99);
    big[0] = '{';
    big[API_BODY_MAX + 98] = '}';
    big[API_BODY_MAX + 99] = '\0';
    r = call_full("POST", "/api/session", NULL, false, big);
    assert_int_equal(r.status, 413);
    assert_string_equal(reason_of(&r), "too_large");
    reply_free(&r);
    cp_free(big);
}

static void test_lockout_and_unlock(void **state)
{
    char reason[64], retry[32], path[96];
    int status = 0;
    reply r;

    (void)state;
    for (int i = 0; i < 10 && status != 423; i++)
        status = login_status("locky", "Wrong-pass1", NULL, reason, sizeof(reason));
    assert_int_equal(status, 423);
    assert_string_equal(reason, "locked");
    r = call_full("POST", "/api/session", NULL, false,
                  "{\"username\":\"locky\",\"password\":\"" PASSWORD "\"}");
    assert_int_equal(r.status, 423);
    assert_true(header(&r, "Retry-After", retry, sizeof(retry)));
    assert_true(atoi(retry) > 0);
    reply_free(&r);

    /* Unlocking is the security admin's. */
    snprintf(path, sizeof(path), "/api/users/%lld/unlock", (long long)T.locky);
    r = call("POST", path, SYS, NULL);
    assert_int_equal(r.status, 403);
    assert_string_equal(reason_of(&r), "forbidden");
    reply_free(&r);
    r = call("POST", path, SEC, NULL);
    assert_int_equal(r.status, 204);
    reply_free(&r);
    assert_int_equal(login_status("locky", PASSWORD, NULL, reason, sizeof(reason)), 200);
}

static void test_mfa(void **state)
{
    char reason[64], code[8], bad[8];

    (void)state;
    assert_int_equal(login_status("rad2", PASSWORD, NULL, reason, sizeof(reason)), 401);
    assert_string_equal(reason, "mfa_required");
    totp_now(T.mfa_secret, code);
    snprintf(bad, sizeof(bad), "%06d", (atoi(code) + 1) % 1000000);
    assert_int_equal(login_status("rad2", PASSWORD, bad, reason, sizeof(reason)), 401);
    assert_string_equal(reason, "mfa_bad");
    assert_int_equal(login_status("rad2", PASSWORD, code, reason, sizeof(reason)), 200);
    /* A code works once. */
    assert_int_equal(login_status("rad2", PASSWORD, code, reason, sizeof(reason)), 401);
    assert_string_equal(reason, "mfa_bad");
}

/* A reviewer must enrol a second factor before anything else. */
static void test_enrolment(void **state)
{
    char token[80], auth[100], body[64], code[8];
    const char *secret;
    reply r;

    (void)state;
    r = call_full("POST", "/api/session", NULL, false,
                  "{\"username\":\"reviewer\",\"password\":\"" PASSWORD "\"}");
    assert_int_equal(r.status, 200);
    assert_true(json_is_true(json_object_get(r.json, "enrol_required")));
    snprintf(token, sizeof(token), "%s", json_string_value(json_object_get(r.json, "token")));
    reply_free(&r);
    snprintf(auth, sizeof(auth), "B %s", token);

    r = call_full("GET", "/api/institutions", auth, false, NULL);
    assert_int_equal(r.status, 403);
    assert_string_equal(reason_of(&r), "enrol_required");
    reply_free(&r);
    r = call_full("GET", "/api/me", auth, false, NULL);
    assert_int_equal(r.status, 200);
    assert_true(json_is_true(json_object_get(r.json, "enrol_required")));
    reply_free(&r);

    r = call_full("POST", "/api/me/totp", auth, false, NULL);
    assert_int_equal(r.status, 200);
    secret = json_string_value(json_object_get(r.json, "secret"));
    assert_non_null(secret);
    assert_true(strncmp(json_string_value(json_object_get(r.json, "uri")), "otpauth://totp/",
                        15) == 0);
    totp_now(secret, code);
    reply_free(&r);

    r = call_full("POST", "/api/me/totp/confirm", auth, false, "{\"code\":\"000000x\"}");
    assert_int_equal(r.status, 400);
    reply_free(&r);
    snprintf(body, sizeof(body), "{\"code\":\"%s\"}", code);
    r = call_full("POST", "/api/me/totp/confirm", auth, false, body);
    assert_int_equal(r.status, 204);
    reply_free(&r);
    r = call_full("GET", "/api/institutions", auth, false, NULL);
    assert_int_equal(r.status, 200);
    reply_free(&r);
}

/* --- cookie and bearer ------------------------------------------------------------------ */

static void test_cookie_and_bearer(void **state)
{
    char token[80], auth[100], cookie[256];
    reply r;

    (void)state;
    login("tech", NULL, token, sizeof(token));
    snprintf(auth, sizeof(auth), "C %s", token);

    r = call_full("GET", "/api/me", auth, false, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "username")), "tech");
    reply_free(&r);

    /* A change by cookie needs the guard header. */
    r = call_full("DELETE", "/api/session", auth, false, NULL);
    assert_int_equal(r.status, 403);
    assert_string_equal(reason_of(&r), "csrf_guard");
    reply_free(&r);
    r = call_full("POST", "/api/me/password", auth, false, "{\"old\":\"a\",\"new\":\"b\"}");
    assert_int_equal(r.status, 403);
    reply_free(&r);

    r = call_full("DELETE", "/api/session", auth, true, NULL);
    assert_int_equal(r.status, 204);
    assert_true(header(&r, "Set-Cookie", cookie, sizeof(cookie)));
    assert_non_null(strstr(cookie, "Max-Age=0"));
    reply_free(&r);
    r = call_full("GET", "/api/me", auth, false, NULL);
    assert_int_equal(r.status, 401);
    assert_true(header(&r, "WWW-Authenticate", cookie, sizeof(cookie)));
    reply_free(&r);

    /* Bearer needs no guard. */
    snprintf(auth, sizeof(auth), "B %s", T.tokens[TECH]);
    r = call_full("POST", "/api/me/password", auth, false,
                  "{\"old\":\"Wrong-pass1\",\"new\":\"N3w-passw0rd\"}");
    assert_int_equal(r.status, 403);
    assert_string_equal(reason_of(&r), "bad_credentials");
    reply_free(&r);
    r = call_full("GET", "/api/me", NULL, false, NULL);
    assert_int_equal(r.status, 401);
    reply_free(&r);
    r = call_full("GET", "/api/me", "B cps_not-a-session-token", false, NULL);
    assert_int_equal(r.status, 401);
    reply_free(&r);
}

static void test_password_change(void **state)
{
    char token[80], auth[100], reason[32];
    reply r;

    (void)state;
    login("target_c2", NULL, token, sizeof(token));
    snprintf(auth, sizeof(auth), "B %s", token);
    r = call_full("POST", "/api/me/password", auth, false,
                  "{\"old\":\"" PASSWORD "\",\"new\":\"short\"}");
    assert_int_equal(r.status, 400);
    assert_string_equal(reason_of(&r), "weak_password");
    reply_free(&r);
    r = call_full("POST", "/api/me/password", auth, false,
                  "{\"old\":\"" PASSWORD "\",\"new\":\"N3w-passw0rd\"}");
    assert_int_equal(r.status, 204);
    reply_free(&r);
    assert_int_equal(login_status("target_c2", PASSWORD, NULL, reason, sizeof(reason)), 401);
    assert_int_equal(login_status("target_c2", "N3w-passw0rd", NULL, reason, sizeof(reason)),
                     200);
}

static cp_status count_rejected(void *ctx, const audit_record *rec)
{
    if (strcmp(rec->type, "token_rejected") == 0)
        (*(int *)ctx)++;
    return CP_OK;
}

static int rejected_count(void)
{
    audit_filter f = { .event = AUDIT_USER_AUTHENTICATION, .actor = "anonymous",
                       .limit = 1000 };
    int n = 0;

    assert_int_equal(audit_query(T.audit, &f, count_rejected, &n, NULL), CP_OK);
    return n;
}

/* The rejected-token records are limited to one per peer per interval. */
static void test_rejected_tokens_rate_limited(void **state)
{
    int before, after;

    (void)state;
    before = rejected_count();
    for (int i = 0; i < 5; i++) {
        reply r = call_full("GET", "/api/me", "B cpat_bogus-token", false, NULL);

        assert_int_equal(r.status, 401);
        reply_free(&r);
    }
    after = rejected_count();
    assert_true(after >= 1);
    assert_true(after - before <= 1);
}

/* --- /api/me per role ------------------------------------------------------------------ */

static void test_me_permissions(void **state)
{
    static const char *const expect[WHO_COUNT] = {
        [SYS] = "institutions.manage,users.manage,roles.grant,tokens.manage,aes.manage,"
                "metrics.read",
        [SEC] = "roles.grant,admin_roles.grant,accounts.unlock",
        [AUD] = "audit.read",
        [HADM] = "studies.read,studies.store,institutions.manage,users.manage,roles.grant,"
                 "qualifications.manage,contracts.manage",
        [CADM] = "studies.read,studies.store,institutions.manage,users.manage,roles.grant,"
                 "qualifications.manage,contracts.manage",
        [TECH] = "studies.read,studies.store",
        [RAD] = "studies.read",
        [SVC] = "studies.read,studies.store,studies.delete,institutions.manage,users.manage,"
                "roles.grant,admin_roles.grant,accounts.unlock,qualifications.manage,"
                "contracts.manage,tokens.manage,aes.manage,audit.read,metrics.read",
    };

    (void)state;
    for (int w = 0; w < WHO_COUNT; w++) {
        reply r = call("GET", "/api/me", w, NULL);
        json_t *perms = json_object_get(r.json, "permissions"), *v;
        char list[512] = "";
        size_t i;

        assert_int_equal(r.status, 200);
        json_array_foreach(perms, i, v)
            snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? "," : "",
                     json_string_value(v));
        if (strcmp(list, expect[w]) != 0)
            fail_msg("%s: permissions %s, expected %s", who_names[w], list, expect[w]);
        if (w != SVC) {
            assert_string_equal(json_string_value(json_object_get(r.json, "username")),
                                who_names[w]);
            assert_true(json_is_object(json_object_get(r.json, "institution")));
        }
        reply_free(&r);
    }
}

/* --- the table of rights --------------------------------------------------------------- */

typedef struct right_row {
    int who;
    const char *method;
    const char *path;
    const char *body;
    int status;
    const char *reason;                 /* NULL: not checked */
} right_row;

/* Replaces {C} {H} {K} (institutions), {TH} {TC} {TC2} {RAD} {SEC} (users), {N} (unique). */
static void expand(const char *in, char *out, size_t cap)
{
    static const struct {
        const char *name;
        int which;
    } vars[] = { { "{C}", 0 },  { "{H}", 1 },   { "{K}", 2 },   { "{TH}", 3 }, { "{TC}", 4 },
                 { "{TC2}", 5 }, { "{RAD}", 6 }, { "{SEC}", 7 }, { "{N}", 8 } };
    size_t len = 0;

    while (*in && len + 32 < cap) {
        size_t k, n = sizeof(vars) / sizeof(vars[0]);

        for (k = 0; k < n; k++) {
            if (strncmp(in, vars[k].name, strlen(vars[k].name)) == 0)
                break;
        }
        if (k == n) {
            out[len++] = *in++;
            continue;
        }
        {
            int64_t v[] = { T.centre, T.hospital, T.clinic, T.target_h, T.target_c,
                            T.target_c2, T.ids[RAD], T.ids[SEC], (int64_t)++T.counter };

            len += (size_t)snprintf(out + len, cap - len, "%lld", (long long)v[vars[k].which]);
        }
        in += strlen(vars[k].name);
    }
    out[len] = '\0';
}

#define NEW_INST_ROOT "{\"parent_id\":0,\"kind\":\"centre\",\"code\":\"R{N}\",\"name\":\"r\"}"
#define NEW_INST_H    "{\"parent_id\":{H},\"kind\":\"clinic\",\"code\":\"K{N}\",\"name\":\"k\"}"
#define NEW_USER_H    "{\"username\":\"u{N}\",\"password\":\"" PASSWORD "\"," \
                      "\"institution_id\":{H},\"roles\":[\"technician\"]}"
#define NEW_USER_C    "{\"username\":\"u{N}\",\"password\":\"" PASSWORD "\"," \
                      "\"institution_id\":{C},\"roles\":[\"technician\"]}"
#define NEW_SECADMIN  "{\"username\":\"u{N}\",\"password\":\"" PASSWORD "\"," \
                      "\"institution_id\":{C},\"roles\":[\"security_admin\"]}"
#define NEW_CONTRACT  "{\"user_id\":{RAD},\"requesting_id\":{H},\"reading_id\":{C}," \
                      "\"start_date\":\"20260101\",\"modalities\":[\"CR\",\"DX\"]}"
#define NEW_TOKEN     "{\"name\":\"gw{N}\",\"institution_id\":{H},\"roles\":[\"technician\"]}"
#define NEW_AE        "{\"institution_id\":{H},\"host\":\"10.0.0.{N}\",\"port\":104," \
                      "\"allow\":\"store,query\"}"
#define ROLES_CLIN    "{\"roles\":[\"technician\",\"radiologist\"]}"
#define ROLES_AUDIT   "{\"roles\":[\"audit_admin\"]}"

static const right_row rights[] = {
    /* Root institutions: the system admin (and the service). */
    { SYS, "POST", "/api/institutions", NEW_INST_ROOT, 201, NULL },
    { SVC, "POST", "/api/institutions", NEW_INST_ROOT, 201, NULL },
    { HADM, "POST", "/api/institutions", NEW_INST_ROOT, 403, "forbidden" },
    { SEC, "POST", "/api/institutions", NEW_INST_ROOT, 403, "forbidden" },
    { AUD, "POST", "/api/institutions", NEW_INST_ROOT, 403, "forbidden" },
    { TECH, "POST", "/api/institutions", NEW_INST_ROOT, 403, "forbidden" },
    { RAD, "POST", "/api/institutions", NEW_INST_ROOT, 403, "forbidden" },
    /* Child institutions: also the admin of the parent's subtree. */
    { SYS, "POST", "/api/institutions", NEW_INST_H, 201, NULL },
    { HADM, "POST", "/api/institutions", NEW_INST_H, 201, NULL },
    { CADM, "POST", "/api/institutions", NEW_INST_H, 403, "forbidden" },
    { SEC, "POST", "/api/institutions", NEW_INST_H, 403, "forbidden" },
    { TECH, "POST", "/api/institutions", NEW_INST_H, 403, "forbidden" },
    { HADM, "PATCH", "/api/institutions/{K}", "{\"name\":\"Clinic\"}", 200, NULL },
    { CADM, "PATCH", "/api/institutions/{K}", "{\"name\":\"Clinic\"}", 403, "forbidden" },
    { HADM, "PATCH", "/api/institutions/{H}", "{\"parent_id\":{C}}", 403, "forbidden" },
    /* Users. */
    { SYS, "POST", "/api/users", NEW_USER_H, 201, NULL },
    { SVC, "POST", "/api/users", NEW_USER_H, 201, NULL },
    { HADM, "POST", "/api/users", NEW_USER_H, 201, NULL },
    { HADM, "POST", "/api/users", NEW_USER_C, 403, "forbidden" },
    { CADM, "POST", "/api/users", NEW_USER_H, 403, "forbidden" },
    { SEC, "POST", "/api/users", NEW_USER_H, 403, "forbidden" },
    { AUD, "POST", "/api/users", NEW_USER_H, 403, "forbidden" },
    { TECH, "POST", "/api/users", NEW_USER_H, 403, "forbidden" },
    { RAD, "POST", "/api/users", NEW_USER_H, 403, "forbidden" },
    { SYS, "POST", "/api/users", NEW_SECADMIN, 403, "forbidden" },
    { CADM, "POST", "/api/users", NEW_SECADMIN, 403, "forbidden" },
    { SVC, "POST", "/api/users", NEW_SECADMIN, 201, NULL },
    { SYS, "GET", "/api/users", NULL, 200, NULL },
    { SEC, "GET", "/api/users", NULL, 200, NULL },
    { HADM, "GET", "/api/users", NULL, 200, NULL },
    { AUD, "GET", "/api/users", NULL, 403, "forbidden" },
    { TECH, "GET", "/api/users", NULL, 403, "forbidden" },
    { HADM, "GET", "/api/users/{TC}", NULL, 403, "forbidden" },
    { HADM, "PATCH", "/api/users/{TH}", "{\"title\":2}", 200, NULL },
    { CADM, "PATCH", "/api/users/{TH}", "{\"title\":2}", 403, "forbidden" },
    { SYS, "PATCH", "/api/users/{SEC}", "{\"display_name\":\"x\"}", 403, "forbidden" },
    { SVC, "PATCH", "/api/users/{SEC}", "{\"display_name\":\"Security\"}", 200, NULL },
    { SYS, "POST", "/api/users/{TH}/password", "{\"password\":\"N3w-passw0rd\"}", 204, NULL },
    { HADM, "POST", "/api/users/{TH}/password", "{\"password\":\"N3w-passw0rd\"}", 204, NULL },
    { SEC, "POST", "/api/users/{TH}/password", "{\"password\":\"N3w-passw0rd\"}", 403, NULL },
    { HADM, "POST", "/api/users/{TH}/password", "{\"password\":\"short\"}", 400,
      "weak_password" },
    { SEC, "DELETE", "/api/users/{TH}/sessions", NULL, 204, NULL },
    { HADM, "DELETE", "/api/users/{TH}/sessions", NULL, 403, "forbidden" },
    /* Clinical roles: the admins within what they see. */
    { SEC, "PUT", "/api/users/{TH}/roles", ROLES_CLIN, 200, NULL },
    { HADM, "PUT", "/api/users/{TH}/roles", ROLES_CLIN, 200, NULL },
    { SYS, "PUT", "/api/users/{TH}/roles", ROLES_CLIN, 200, NULL },
    { CADM, "PUT", "/api/users/{TH}/roles", ROLES_CLIN, 403, "forbidden" },
    { AUD, "PUT", "/api/users/{TH}/roles", ROLES_CLIN, 403, "forbidden" },
    { TECH, "PUT", "/api/users/{TH}/roles", ROLES_CLIN, 403, "forbidden" },
    /* Separated roles: the security admin only, never to itself. */
    { SYS, "PUT", "/api/users/{TC}/roles", ROLES_AUDIT, 403, "forbidden" },
    { CADM, "PUT", "/api/users/{TC}/roles", ROLES_AUDIT, 403, "forbidden" },
    { HADM, "PUT", "/api/users/{TC}/roles", ROLES_AUDIT, 403, "forbidden" },
    { SEC, "PUT", "/api/users/{TC}/roles", ROLES_AUDIT, 200, NULL },
    { SEC, "PUT", "/api/users/{SEC}/roles", "{\"roles\":[\"security_admin\",\"audit_admin\"]}",
      403, "forbidden" },
    { SEC, "PUT", "/api/users/{TC2}/roles", "{\"roles\":[\"system_admin\",\"technician\"]}",
      400, "roles_conflict" },
    { SEC, "PUT", "/api/users/{TC2}/roles", "{\"roles\":[\"wizard\"]}", 400, "invalid" },
    /* Contracts: who manages the reading institution. */
    { CADM, "POST", "/api/contracts", NEW_CONTRACT, 201, NULL },
    { SVC, "POST", "/api/contracts", NEW_CONTRACT, 201, NULL },
    { HADM, "POST", "/api/contracts", NEW_CONTRACT, 403, "forbidden" },
    { SYS, "POST", "/api/contracts", NEW_CONTRACT, 403, "forbidden" },
    { SEC, "POST", "/api/contracts", NEW_CONTRACT, 403, "forbidden" },
    { TECH, "POST", "/api/contracts", NEW_CONTRACT, 403, "forbidden" },
    { CADM, "GET", "/api/contracts?user={RAD}", NULL, 200, NULL },
    { RAD, "GET", "/api/contracts", NULL, 200, NULL },
    { HADM, "PATCH", "/api/contracts/1", "{\"revoked\":true}", 403, "forbidden" },
    { CADM, "PATCH", "/api/contracts/1", "{\"end_date\":\"2026-12\"}", 400, "invalid" },
    { CADM, "PATCH", "/api/contracts/1", "{\"end_date\":\"20271231\",\"revoked\":true}",
      200, NULL },
    /* Qualifications: the admin of the user's subtree. */
    { CADM, "PUT", "/api/users/{RAD}/qualifications",
      "[{\"modality\":\"CR\",\"body_part\":\"CHEST\"},{\"modality\":\"*\",\"body_part\":\"*\"}]",
      200, NULL },
    { HADM, "PUT", "/api/users/{RAD}/qualifications", "[]", 403, "forbidden" },
    { RAD, "GET", "/api/users/{RAD}/qualifications", NULL, 200, NULL },
    { TECH, "GET", "/api/users/{RAD}/qualifications", NULL, 403, "forbidden" },
    /* API tokens and AEs: the system admin. */
    { SYS, "POST", "/api/tokens", NEW_TOKEN, 201, NULL },
    { SVC, "POST", "/api/tokens", NEW_TOKEN, 201, NULL },
    { HADM, "POST", "/api/tokens", NEW_TOKEN, 403, "forbidden" },
    { SEC, "POST", "/api/tokens", NEW_TOKEN, 403, "forbidden" },
    { AUD, "POST", "/api/tokens", NEW_TOKEN, 403, "forbidden" },
    { SYS, "GET", "/api/tokens", NULL, 200, NULL },
    { HADM, "GET", "/api/tokens", NULL, 403, "forbidden" },
    { SYS, "PUT", "/api/aes/CT{N}", NEW_AE, 200, NULL },
    { HADM, "PUT", "/api/aes/CT{N}", NEW_AE, 403, "forbidden" },
    { SEC, "PUT", "/api/aes/CT{N}", NEW_AE, 403, "forbidden" },
    { SYS, "GET", "/api/aes", NULL, 200, NULL },
    { TECH, "GET", "/api/aes", NULL, 403, "forbidden" },
    { SYS, "PUT", "/api/aes/MR1", NEW_AE, 200, NULL },
    { SYS, "PUT", "/api/aes/ABCDEFGHIJKLMNOPQ", NEW_AE, 400, "invalid" },
    { HADM, "DELETE", "/api/aes/MR1", NULL, 403, "forbidden" },
    { SYS, "DELETE", "/api/aes/MR1", NULL, 204, NULL },
    { SYS, "DELETE", "/api/aes/MR1", NULL, 404, "not_found" },
    /* The audit trail: the audit admin only. */
    { AUD, "GET", "/api/audit", NULL, 200, NULL },
    { SVC, "GET", "/api/audit", NULL, 200, NULL },
    { SYS, "GET", "/api/audit", NULL, 403, "forbidden" },
    { SEC, "GET", "/api/audit", NULL, 403, "forbidden" },
    { HADM, "GET", "/api/audit/verify", NULL, 403, "forbidden" },
    { TECH, "GET", "/api/audit/export", NULL, 403, "forbidden" },
};

static void test_rights_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(rights) / sizeof(rights[0]); i++) {
        const right_row *row = &rights[i];
        char path[256], body[512];
        reply r;

        expand(row->path, path, sizeof(path));
        if (row->body)
            expand(row->body, body, sizeof(body));
        r = call(row->method, path, row->who, row->body ? body : NULL);
        if (r.status != row->status || (row->reason && strcmp(reason_of(&r), row->reason)))
            fail_msg("row %zu: %s %s %s: %d %s, expected %d", i, who_names[row->who],
                     row->method, path, r.status, r.body, row->status);
        reply_free(&r);
    }
}

/* An institution admin lists only the users of its subtree. */
static void test_user_listing(void **state)
{
    reply r;
    json_t *u;
    size_t i;

    (void)state;
    r = call("GET", "/api/users", HADM, NULL);
    assert_int_equal(r.status, 200);
    assert_true(json_array_size(r.json) > 3);
    json_array_foreach(r.json, i, u) {
        json_int_t inst = json_integer_value(json_object_get(u, "institution_id"));
        directory_institution di;

        assert_int_equal(directory_institution_get(T.d, inst, &di, NULL), CP_OK);
        assert_true(inst == T.hospital || di.parent_id == T.hospital);
    }
    reply_free(&r);
}

/* A token made through the API authenticates, and stops once revoked. */
static void test_api_token(void **state)
{
    char path[64], auth[128];
    json_int_t id;
    reply r;

    (void)state;
    r = call("POST", "/api/tokens", SYS,
             "{\"name\":\"gateway\",\"institution_id\":1,\"roles\":[\"system_admin\"]}");
    assert_int_equal(r.status, 400);
    assert_string_equal(reason_of(&r), "roles_conflict");
    reply_free(&r);

    r = call("POST", "/api/tokens", SYS,
             "{\"name\":\"gateway\",\"institution_id\":2,\"roles\":[\"technician\"],"
             "\"expires\":\"2099-01-01T00:00:00Z\"}");
    assert_int_equal(r.status, 201);
    assert_true(strncmp(json_string_value(json_object_get(r.json, "token")), "cpat_", 5) == 0);
    assert_string_equal(json_string_value(json_object_get(r.json, "expires")),
                        "2099-01-01T00:00:00Z");
    snprintf(auth, sizeof(auth), "B %s", json_string_value(json_object_get(r.json, "token")));
    id = json_integer_value(json_object_get(r.json, "id"));
    reply_free(&r);

    r = call_full("GET", "/api/me", auth, false, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "kind")), "token");
    assert_string_equal(json_string_value(json_object_get(r.json, "username")), "gateway");
    reply_free(&r);

    snprintf(path, sizeof(path), "/api/tokens/%lld", (long long)id);
    r = call("DELETE", path, HADM, NULL);
    assert_int_equal(r.status, 403);
    reply_free(&r);
    r = call("DELETE", path, SYS, NULL);
    assert_int_equal(r.status, 204);
    reply_free(&r);
    r = call_full("GET", "/api/me", auth, false, NULL);
    assert_int_equal(r.status, 401);
    reply_free(&r);
    r = call("DELETE", "/api/tokens/999999", SYS, NULL);
    assert_int_equal(r.status, 404);
    reply_free(&r);
}

/* --- the audit trail ------------------------------------------------------------------ */

static bool has_type(const json_t *records, const char *type)
{
    const json_t *rec;
    size_t i;

    json_array_foreach(records, i, rec) {
        if (strcmp(json_string_value(json_object_get(rec, "type")), type) == 0)
            return true;
    }
    return false;
}

/* The newest record of a type, or NULL. */
static const json_t *record_of(const json_t *records, const char *type)
{
    const json_t *rec;
    size_t i;

    json_array_foreach(records, i, rec) {
        if (strcmp(json_string_value(json_object_get(rec, "type")), type) == 0)
            return rec;
    }
    return NULL;
}

static void test_audit_read(void **state)
{
    static const char *const types[] = {
        "login", "logout", "token_rejected", "institution_created", "institution_updated",
        "user_created", "user_updated", "roles_changed", "password_reset", "password_changed",
        "account_unlocked", "sessions_ended", "qualifications_changed", "contract_created",
        "token_created", "token_revoked", "ae_put", "ae_removed", "totp_enrolled",
        "contract_updated",
    };
    const json_t *rec;
    json_t *records, *first;
    reply r;
    size_t i;

    (void)state;
    r = call("GET", "/api/audit?limit=500", AUD, NULL);
    assert_int_equal(r.status, 200);
    records = json_object_get(r.json, "records");
    assert_true(json_array_size(records) > 20);
    for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (!has_type(records, types[i]))
            fail_msg("no audit record of type %s", types[i]);
    }
    /* The actor comes from the principal; the change from the route. */
    rec = record_of(records, "roles_changed");
    assert_non_null(rec);
    assert_string_equal(json_string_value(json_object_get(rec, "event")), "security_alert");
    assert_string_equal(json_string_value(json_object_get(rec, "action")), "U");
    assert_string_equal(json_string_value(json_object_get(rec, "object_kind")), "user");
    assert_string_equal(json_string_value(json_object_get(rec, "peer")), "127.0.0.1");
    assert_true(json_is_string(json_object_get(json_object_get(rec, "detail"), "to")));
    assert_true(strlen(json_string_value(json_object_get(rec, "actor_roles"))) > 0);
    rec = record_of(records, "token_rejected");
    assert_string_equal(json_string_value(json_object_get(rec, "actor")), "anonymous");
    assert_int_equal(json_integer_value(json_object_get(rec, "outcome")), 4);

    /* Newest first, and no password anywhere. */
    first = json_array_get(records, 0);
    assert_true(json_integer_value(json_object_get(first, "seq")) >
                json_integer_value(json_object_get(json_array_get(records, 1), "seq")));
    assert_null(strstr(r.body, PASSWORD));
    assert_null(strstr(r.body, "N3w-passw0rd"));
    reply_free(&r);

    /* Filters and paging. */
    r = call("GET", "/api/audit?event=user_authentication&actor=locky&limit=2", AUD, NULL);
    assert_int_equal(r.status, 200);
    records = json_object_get(r.json, "records");
    assert_int_equal(json_array_size(records), 2);
    json_array_foreach(records, i, first) {
        assert_string_equal(json_string_value(json_object_get(first, "actor")), "locky");
    }
    assert_true(json_is_integer(json_object_get(r.json, "next_before")));
    reply_free(&r);
    r = call("GET", "/api/audit?event=nonsense", AUD, NULL);
    assert_int_equal(r.status, 400);
    reply_free(&r);
    r = call("GET", "/api/audit?from=20260101&to=2099-12-31T00:00:00Z&limit=501", AUD, NULL);
    assert_int_equal(r.status, 400);
    reply_free(&r);

    /* The reads themselves are recorded. */
    r = call("GET", "/api/audit?event=audit_log_used", AUD, NULL);
    assert_int_equal(r.status, 200);
    assert_true(json_array_size(json_object_get(r.json, "records")) >= 2);
    reply_free(&r);
}

static void test_audit_export_and_verify(void **state)
{
    reply r;
    char type[64];
    int lines = 0;

    (void)state;
    r = call("GET", "/api/audit/export?event=security_alert", AUD, NULL);
    assert_int_equal(r.status, 200);
    assert_true(header(&r, "Content-Type", type, sizeof(type)));
    assert_string_equal(type, "application/x-ndjson");
    for (char *line = r.body, *nl; *line; line = nl + 1) {
        json_t *o;

        nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = '\0';
        o = json_loads(line, 0, NULL);
        if (!o)
            fail_msg("export line %d is not JSON: %s", lines, line);
        assert_non_null(json_object_get(o, "EventIdentification"));
        json_decref(o);
        lines++;
    }
    assert_true(lines > 10);
    reply_free(&r);

    r = call("GET", "/api/audit/verify", AUD, NULL);
    assert_int_equal(r.status, 200);
    assert_true(json_is_true(json_object_get(r.json, "intact")));
    assert_true(json_integer_value(json_object_get(r.json, "records")) > 20);
    reply_free(&r);
}

/* The export pages through the trail with bounded memory: more than a page here. */
static void test_audit_export_pages(void **state)
{
    audit_record rec = { .event = AUDIT_QUERY, .action = AUDIT_EXECUTE };
    int64_t last = 0;
    int lines = 0;
    reply r;

    (void)state;
    snprintf(rec.actor, sizeof(rec.actor), "filler");
    snprintf(rec.type, sizeof(rec.type), "c-find");
    for (int i = 0; i < API_AUDIT_EXPORT_PAGE * 2 + 17; i++)
        assert_int_equal(audit_write(T.audit, &rec), CP_OK);
    assert_int_equal(audit_flush(T.audit, NULL), CP_OK);

    r = call("GET", "/api/audit/export?event=query&actor=filler", AUD, NULL);
    assert_int_equal(r.status, 200);
    for (char *line = r.body, *nl; *line; line = nl + 1) {
        json_t *o;
        int64_t seq;

        nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = '\0';
        o = json_loads(line, 0, NULL);
        assert_non_null(o);
        seq = json_integer_value(json_object_get(o, "seq"));
        assert_true(seq > last);
        last = seq;
        json_decref(o);
        lines++;
    }
    assert_int_equal(lines, API_AUDIT_EXPORT_PAGE * 2 + 17);
    reply_free(&r);

    r = call("GET", "/api/audit/export?event=query&limit=7", AUD, NULL);
    assert_int_equal(r.status, 200);
    lines = 0;
    for (const char *p = r.body; (p = strchr(p, '\n')) != NULL; p++)
        lines++;
    assert_int_equal(lines, 7);
    reply_free(&r);
}

/* Disabling a user ends its sessions at once. */
static void test_disable_ends_sessions(void **state)
{
    char token[80], auth[100], path[64], reason[32];
    reply r;

    (void)state;
    login("locky", NULL, token, sizeof(token));
    snprintf(auth, sizeof(auth), "B %s", token);
    snprintf(path, sizeof(path), "/api/users/%lld", (long long)T.locky);
    r = call("PATCH", path, HADM, "{\"disabled\":true}");
    assert_int_equal(r.status, 200);
    assert_true(json_is_true(json_object_get(r.json, "disabled")));
    reply_free(&r);
    r = call_full("GET", "/api/me", auth, false, NULL);
    assert_int_equal(r.status, 401);
    reply_free(&r);
    assert_int_equal(login_status("locky", PASSWORD, NULL, reason, sizeof(reason)), 403);
    assert_string_equal(reason, "disabled");
}

/* Institutions: each sees its own; the separated admins see all. */
static void test_institution_visibility(void **state)
{
    char path[64];
    reply r;

    (void)state;
    r = call("GET", "/api/institutions", TECH, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(r.json), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(r.json, 0), "id")),
                     T.clinic);
    reply_free(&r);
    r = call("GET", "/api/institutions", AUD, NULL);
    assert_int_equal(r.status, 200);
    assert_true(json_array_size(r.json) >= 3);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(r.json, 0),
                                                        "parent_id")), 0);
    reply_free(&r);
    snprintf(path, sizeof(path), "/api/institutions/%lld", (long long)T.centre);
    r = call("GET", path, TECH, NULL);
    assert_int_equal(r.status, 403);
    reply_free(&r);
    r = call("GET", "/api/institutions/424242", SYS, NULL);
    assert_int_equal(r.status, 404);
    assert_string_equal(reason_of(&r), "not_found");
    reply_free(&r);
}

/* --- health and a Redis that goes away ------------------------------------------------ */

static void test_redis_away(void **state)
{
    char reason[32];
    reply r;
    int status = 0;

    (void)state;
    r = call_full("GET", "/api/health", NULL, false, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "status")), "ok");
    reply_free(&r);

    redis_stop();
    r = call("GET", "/api/me", TECH, NULL);
    assert_int_equal(r.status, 503);
    reply_free(&r);
    r = call_full("GET", "/api/health", NULL, false, NULL);
    assert_int_equal(r.status, 503);
    assert_string_equal(json_string_value(json_object_get(r.json, "redis")), "unavailable");
    assert_string_equal(json_string_value(json_object_get(r.json, "database")), "ok");
    reply_free(&r);
    assert_int_equal(login_status("tech", PASSWORD, NULL, reason, sizeof(reason)), 503);

    T.redis = redis_start();
    assert_true(T.redis > 0 && socket_answers(T.sock));
    for (int i = 0; i < 100 && status != 200; i++) {
        status = login_status("tech", PASSWORD, NULL, reason, sizeof(reason));
        if (status != 200)
            usleep(100000);
    }
    assert_int_equal(status, 200);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_login),
        cmocka_unit_test(test_login_too_large),
        cmocka_unit_test(test_lockout_and_unlock),
        cmocka_unit_test(test_mfa),
        cmocka_unit_test(test_enrolment),
        cmocka_unit_test(test_cookie_and_bearer),
        cmocka_unit_test(test_password_change),
        cmocka_unit_test(test_rejected_tokens_rate_limited),
        cmocka_unit_test(test_me_permissions),
        cmocka_unit_test(test_rights_table),
        cmocka_unit_test(test_user_listing),
        cmocka_unit_test(test_api_token),
        cmocka_unit_test(test_audit_read),
        cmocka_unit_test(test_audit_export_and_verify),
        cmocka_unit_test(test_audit_export_pages),
        cmocka_unit_test(test_disable_ends_sessions),
        cmocka_unit_test(test_institution_visibility),
        cmocka_unit_test(test_redis_away),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
