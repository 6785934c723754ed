/*
 * accept.c - Accept headers as DICOMweb clients send them (PS3.18 8.7.3,
 * RFC 9110 12.5.1), header parameters (RFC 9110 5.6.6) and the base URL
 * behind a reverse proxy (RFC 7239 4, the de facto X-Forwarded-* headers).
 *
 * All readers here walk the header text once with a small scanner that knows
 * tokens, quoted strings (with backslash escapes) and the separators ',',
 * ';' and '='. Anything it cannot read ends the current element, which is
 * then skipped rather than failing the whole header.
 */
#include "http/accept.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

static bool is_token_char(char c)
{
    return c > ' ' && c < 0x7f && !strchr(",;=\"", c);
}

/*
 * Reads a token or a quoted string at p into out (lower-cased when `lower`).
 * Returns the position after it; *overflow is set when it did not fit.
 */
static const char *read_value(const char *p, char *out, size_t cap, bool lower,
                              bool *overflow)
{
    size_t n = 0;

    *overflow = false;
    if (*p == '"') {
        for (p++; *p && *p != '"'; p++) {
            if (*p == '\\' && p[1])
                p++;
            if (n + 1 < cap)
                out[n++] = lower ? (char)tolower((unsigned char)*p) : *p;
            else
                *overflow = true;
        }
        if (*p == '"')
            p++;
    } else {
        for (; is_token_char(*p); p++) {
            if (n + 1 < cap)
                out[n++] = lower ? (char)tolower((unsigned char)*p) : *p;
            else
                *overflow = true;
        }
    }
    if (cap > 0)
        out[n] = 0;
    return p;
}

/* Skips to the ';' or ',' (or end) that ends the current piece. */
static const char *skip_piece(const char *p)
{
    while (*p && *p != ';' && *p != ',') {
        if (*p == '"') {
            for (p++; *p && *p != '"'; p++) {
                if (*p == '\\' && p[1])
                    p++;
            }
            if (*p)
                p++;
        } else {
            p++;
        }
    }
    return p;
}

/*
 * Reads "name=value" at p (after a ';'). *name gets the lower-cased name,
 * *value the unquoted value; returns the position of the next ';' or ','.
 */
static const char *read_param(const char *p, char *name, size_t name_cap, char *value,
                              size_t value_cap, bool *overflow)
{
    bool over = false;

    p = skip_ws(p);
    p = read_value(p, name, name_cap, true, &over);
    p = skip_ws(p);
    value[0] = 0;
    *overflow = over;
    if (*p == '=') {
        p = skip_ws(p + 1);
        p = read_value(p, value, value_cap, false, &over);
        *overflow = *overflow || over;
    }
    return skip_piece(p);
}

/* A q-value ("1", "0.8", "0.125") in thousandths; malformed ones count as 1. */
static int parse_q(const char *s)
{
    int q = 0, scale = 100;

    if (s[0] == '0' || s[0] == '1') {
        q = (s[0] - '0') * 1000;
        s++;
        if (*s == '.') {
            for (s++; isdigit((unsigned char)*s) && scale > 0; s++, scale /= 10)
                q += (*s - '0') * scale;
        }
        if (*s == 0)
            return q > 1000 ? 1000 : q;
    }
    return 1000;
}

static bool valid_media(const char *m)
{
    const char *slash = strchr(m, '/');

    return slash && slash != m && slash[1] && !strchr(slash + 1, '/');
}

/* Adds one item per transfer syntax named in `ts` (a comma-separated list). */
static void add_items(http_accept *out, const http_accept_item *base, const char *ts)
{
    const char *p = ts;

    do {
        http_accept_item *it;
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);

        while (n > 0 && (*p == ' ' || *p == '\t')) {
            p++;
            n--;
        }
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (out->count == HTTP_ACCEPT_ITEMS_MAX) {
            out->truncated = true;
            return;
        }
        it = &out->items[out->count++];
        *it = *base;
        if (n >= sizeof(it->transfer_syntax))
            n = 0;
        memcpy(it->transfer_syntax, p, n);
        it->transfer_syntax[n] = 0;
        p = end ? end + 1 : NULL;
    } while (p);
}

/* Reads one element (media range and parameters); returns the position after it. */
static const char *parse_element(const char *p, http_accept *out)
{
    http_accept_item base;
    char ts_list[HTTP_ACCEPT_ITEMS_MAX][HTTP_TS_MAX];
    size_t ts_count = 0;
    bool over = false, ok;

    memset(&base, 0, sizeof(base));
    base.q = 1000;
    p = skip_ws(p);
    p = read_value(p, base.media, sizeof(base.media), true, &over);
    ok = !over && valid_media(base.media);
    p = skip_piece(p);

    while (*p == ';') {
        char name[32], value[HTTP_MEDIA_MAX * 4];
        bool vover;

        p = read_param(p + 1, name, sizeof(name), value, sizeof(value), &vover);
        if (strcmp(name, "q") == 0) {
            base.q = parse_q(value);
        } else if (strcmp(name, "type") == 0 && !vover &&
                   strlen(value) < sizeof(base.type)) {
            for (size_t i = 0; value[i]; i++)
                base.type[i] = (char)tolower((unsigned char)value[i]);
        } else if (strcmp(name, "transfer-syntax") == 0 && !vover && value[0] &&
                   ts_count < HTTP_ACCEPT_ITEMS_MAX) {
            snprintf(ts_list[ts_count++], HTTP_TS_MAX, "%.*s", HTTP_TS_MAX - 1, value);
        }
    }

    if (ok && base.q > 0) {
        if (ts_count == 0)
            add_items(out, &base, "");
        for (size_t i = 0; i < ts_count; i++)
            add_items(out, &base, ts_list[i]);
    }
    if (*p == ',')
        p++;
    return p;
}

cp_status http_accept_parse(const char *header, http_accept *out)
{
    const char *p = header;

    out->count = 0;
    out->truncated = false;
    if (!header)
        return CP_OK;
    while (*p) {
        const char *before = p;

        p = parse_element(p, out);
        if (p == before)
            p++;
    }

    /* Stable insertion sort by q, highest first: there are few items. */
    for (size_t i = 1; i < out->count; i++) {
        http_accept_item it = out->items[i];
        size_t j = i;

        while (j > 0 && out->items[j - 1].q < it.q) {
            out->items[j] = out->items[j - 1];
            j--;
        }
        out->items[j] = it;
    }

    if (out->count == 0 && *skip_ws(header))
        return CP_ERR_MALFORMED;
    return CP_OK;
}

/* 2 for an exact match, 1 for a subtype wildcard, 0 for any, -1 for none. */
static int media_match(const char *range, const char *media)
{
    size_t n;

    if (strcmp(range, "*/*") == 0 || strcmp(range, "*") == 0)
        return 0;
    if (strcasecmp(range, media) == 0)
        return 2;
    n = strlen(range);
    if (n >= 2 && range[n - 1] == '*' && range[n - 2] == '/' &&
        strncasecmp(range, media, n - 1) == 0)
        return 1;
    return -1;
}

/* Specificity of item for offer, or -1 when it does not match. */
static int item_match(const http_accept_item *it, const http_offer *o)
{
    int m = media_match(it->media, o->media), score;

    if (m < 0)
        return -1;
    score = m * 16;

    if (it->type[0]) {
        int t = o->type ? media_match(it->type, o->type) : -1;

        if (t < 0)
            return -1;
        score += t * 4;
    }

    if (it->transfer_syntax[0] && strcmp(it->transfer_syntax, "*") != 0) {
        if (o->transfer_syntax && strcmp(o->transfer_syntax, it->transfer_syntax) != 0)
            return -1;
        score += 2;
    }
    return score;
}

int http_accept_choose(const http_accept *accept, const http_offer *offers, size_t n,
                       const http_accept_item **matched)
{
    int best = -1, best_q = 0;
    const http_accept_item *best_item = NULL;

    if (matched)
        *matched = NULL;
    if (n == 0)
        return -1;
    if (!accept || accept->count == 0)
        return 0;

    for (size_t i = 0; i < n; i++) {
        const http_accept_item *item = NULL;
        int spec = -1;

        for (size_t j = 0; j < accept->count; j++) {
            int s = item_match(&accept->items[j], &offers[i]);

            /* Items are in q order, so the first of a specificity has its top q. */
            if (s > spec) {
                spec = s;
                item = &accept->items[j];
            }
        }
        if (item && item->q > best_q) {
            best = (int)i;
            best_q = item->q;
            best_item = item;
        }
    }
    if (matched)
        *matched = best_item;
    return best;
}

cp_status http_header_param(const char *value, const char *name, char *out, size_t cap)
{
    const char *p;
    bool over = false;

    if (cap == 0)
        return CP_ERR_LIMIT;
    out[0] = 0;
    if (!value)
        return CP_ERR_NOT_FOUND;
    p = skip_piece(value);
    while (*p == ';') {
        char pname[64];

        p = read_param(p + 1, pname, sizeof(pname), out, cap, &over);
        if (strcasecmp(pname, name) == 0)
            return over ? CP_ERR_LIMIT : CP_OK;
    }
    out[0] = 0;
    return CP_ERR_NOT_FOUND;
}

bool http_media_type_is(const char *value, const char *type)
{
    size_t n = strlen(type);

    if (!value)
        return false;
    value = skip_ws(value);
    if (strncasecmp(value, type, n) != 0)
        return false;
    value = skip_ws(value + n);
    return *value == 0 || *value == ';';
}

/* --- base URL -------------------------------------------------------------- */

static bool plausible_host(const char *h)
{
    size_t n = strlen(h);

    if (n == 0 || n > 255)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!isalnum((unsigned char)h[i]) && !strchr(".-_:[]", h[i]))
            return false;
    }
    return true;
}

static bool plausible_prefix(const char *p)
{
    if (p[0] != '/' || strlen(p) > 255)
        return false;
    for (; *p; p++) {
        if (!isalnum((unsigned char)*p) && !strchr("/-._~%", *p))
            return false;
    }
    return true;
}

/* The first comma-separated value of a header, trimmed, unquoted. */
static void first_value(const char *h, char *out, size_t cap)
{
    bool over;

    size_t n;

    out[0] = 0;
    if (!h)
        return;
    h = skip_ws(h);
    if (*h == '"') {
        read_value(h, out, cap, false, &over);
        if (over)
            out[0] = 0;
        return;
    }
    n = strcspn(h, ",");
    while (n > 0 && (h[n - 1] == ' ' || h[n - 1] == '\t'))
        n--;
    if (n < cap) {
        memcpy(out, h, n);
        out[n] = 0;
    }
}

/* proto= and host= of the first element of a Forwarded header. */
static void read_forwarded(const char *h, char *proto, char *host, size_t cap)
{
    const char *p = h;

    while (*p && *p != ',') {
        char name[32], value[300];
        bool over;

        p = read_param(p, name, sizeof(name), value, sizeof(value), &over);
        if (!over && strcmp(name, "proto") == 0 && strlen(value) < cap)
            strcpy(proto, value);
        else if (!over && strcmp(name, "host") == 0 && strlen(value) < cap)
            strcpy(host, value);
        if (*p == ';')
            p++;
    }
}

cp_status http_base_url(const http_forward_info *in, char *out, size_t cap)
{
    char proto[300] = "", host[300] = "", port[16] = "", prefix[300] = "";
    const char *after;
    int n;

    if (in->trust_proxy && in->forwarded)
        read_forwarded(in->forwarded, proto, host, sizeof(host));
    if (in->trust_proxy) {
        if (!proto[0])
            first_value(in->x_forwarded_proto, proto, sizeof(proto));
        if (!host[0]) {
            first_value(in->x_forwarded_host, host, sizeof(host));
            first_value(in->x_forwarded_port, port, sizeof(port));
        }
        first_value(in->x_forwarded_prefix, prefix, sizeof(prefix));
    }

    if (strcasecmp(proto, "http") != 0 && strcasecmp(proto, "https") != 0)
        strcpy(proto, in->tls ? "https" : "http");
    for (char *c = proto; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    if (!plausible_host(host)) {
        first_value(in->host, host, sizeof(host));
        port[0] = 0;
    }
    if (!plausible_host(host))
        strcpy(host, "localhost");
    after = host[0] == '[' ? strchr(host, ']') : host;
    if (port[0] && (strspn(port, "0123456789") != strlen(port) || strlen(port) > 5 ||
                    !after || strchr(after, ':')))
        port[0] = 0;
    if (!plausible_prefix(prefix))
        prefix[0] = 0;
    for (size_t len = strlen(prefix); len > 0 && prefix[len - 1] == '/'; len--)
        prefix[len - 1] = 0;

    n = snprintf(out, cap, "%s://%s%s%s%s", proto, host, port[0] ? ":" : "", port, prefix);
    if (n < 0 || (size_t)n >= cap)
        return CP_ERR_LIMIT;
    return CP_OK;
}
