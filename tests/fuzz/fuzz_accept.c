/*
 * fuzz_accept.c - libFuzzer target for the Accept reader and content
 * negotiation (PS3.18 8.7.3), header parameters and the proxy-aware base
 * URL (RFC 7239).
 *
 * The input, cut at newlines, gives an Accept header and the header values
 * a reverse proxy would add. Every reader must return without reading out
 * of bounds, items must come out ordered by q, and a chosen offer must be
 * one of those offered.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "http/accept.h"
#include "http/multipart.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const http_offer offers[] = {
        { "application/dicom+json", NULL, NULL },
        { "multipart/related", "application/dicom", "1.2.840.10008.1.2.1" },
        { "multipart/related", "application/octet-stream", NULL },
        { "image/jpeg", NULL, NULL },
    };
    char *text = cp_malloc(size + 1), *lines[6] = { 0 };
    const http_accept_item *m = NULL;
    http_accept *a = cp_malloc(sizeof(*a));
    char out[300];
    size_t n = 0;
    int pick;

    if (!text || !a)
        abort();
    memcpy(text, data, size);
    text[size] = 0;
    lines[n++] = text;
    for (char *p = text; *p && n < 6; p++) {
        if (*p == '\n') {
            *p = 0;
            lines[n++] = p + 1;
        }
    }

    http_accept_parse(lines[0], a);
    for (size_t i = 1; i < a->count; i++) {
        if (a->items[i].q > a->items[i - 1].q || a->items[i].q <= 0)
            abort();
    }
    pick = http_accept_choose(a, offers, sizeof(offers) / sizeof(offers[0]), &m);
    if (pick < -1 || pick >= 4 || (pick >= 0 && a->count > 0 && !m))
        abort();

    http_header_param(lines[0], "boundary", out, sizeof(out));
    http_header_param(lines[0], "q", out, 4);
    http_multipart_boundary_parse(lines[0], out, sizeof(out));
    http_media_type_is(lines[0], "application/dicom");
    {
        http_forward_info in = {
            .forwarded = lines[1], .x_forwarded_proto = lines[2],
            .x_forwarded_host = lines[3], .x_forwarded_prefix = lines[4],
            .x_forwarded_port = lines[5], .host = lines[0],
            .tls = size & 1, .trust_proxy = true,
        };

        if (http_base_url(&in, out, sizeof(out)) == CP_OK && strlen(out) >= sizeof(out))
            abort();
        http_base_url(&in, out, 12);
    }
    cp_free(a);
    cp_free(text);
    return 0;
}
