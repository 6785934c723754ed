/*
 * test_http_accept.c - content negotiation (PS3.18 8.7.3), header
 * parameters and the base URL behind a reverse proxy (RFC 7239).
 *
 * The Accept values are the ones real clients send: OHIF's default data
 * source (`acceptHeader` of its DICOMweb configuration), cornerstone's WADO
 * image loader, and dicomweb-client, which joins several media types with
 * ", " and quotes the type parameter.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "http/accept.h"

#define EXPLICIT_LE "1.2.840.10008.1.2.1"
#define JPEG_BASELINE "1.2.840.10008.1.2.4.50"

static void test_ohif_frames(void **state)
{
    http_accept a;

    (void)state;
    assert_int_equal(http_accept_parse(
                         "multipart/related; type=\"application/octet-stream\"; transfer-syntax=*",
                         &a),
                     CP_OK);
    assert_int_equal(a.count, 1);
    assert_string_equal(a.items[0].media, "multipart/related");
    assert_string_equal(a.items[0].type, "application/octet-stream");
    assert_string_equal(a.items[0].transfer_syntax, "*");
    assert_int_equal(a.items[0].q, 1000);

    assert_int_equal(http_accept_parse("multipart/related; type=application/octet-stream; "
                                       "transfer-syntax=*", &a),
                     CP_OK);
    assert_string_equal(a.items[0].type, "application/octet-stream");
}

static void test_unquoted_and_repeated(void **state)
{
    http_accept a;

    (void)state;
    assert_int_equal(http_accept_parse("multipart/related; type=application/dicom; "
                                       "transfer-syntax=" EXPLICIT_LE, &a),
                     CP_OK);
    assert_int_equal(a.count, 1);
    assert_string_equal(a.items[0].type, "application/dicom");
    assert_string_equal(a.items[0].transfer_syntax, EXPLICIT_LE);

    assert_int_equal(http_accept_parse("multipart/related; type=\"image/jpeg\"; transfer-syntax="
                                       JPEG_BASELINE "; transfer-syntax=\"" EXPLICIT_LE ","
                                       "1.2.840.10008.1.2\"", &a),
                     CP_OK);
    assert_int_equal(a.count, 3);
    assert_string_equal(a.items[0].transfer_syntax, JPEG_BASELINE);
    assert_string_equal(a.items[1].transfer_syntax, EXPLICIT_LE);
    assert_string_equal(a.items[2].transfer_syntax, "1.2.840.10008.1.2");
    assert_string_equal(a.items[2].type, "image/jpeg");
}

static void test_dicomweb_client_list(void **state)
{
    http_accept a;
    const http_accept_item *m;
    const http_offer metadata[] = {
        { "application/dicom+json", NULL, NULL },
        { "multipart/related", "application/dicom", NULL },
    };

    (void)state;
    assert_int_equal(http_accept_parse("application/dicom+json, multipart/related; "
                                       "type=\"application/dicom\"", &a),
                     CP_OK);
    assert_int_equal(a.count, 2);
    assert_string_equal(a.items[0].media, "application/dicom+json");
    assert_string_equal(a.items[1].media, "multipart/related");
    assert_int_equal(http_accept_choose(&a, metadata, 2, &m), 0);
    assert_ptr_equal(m, &a.items[0]);

    /* Only the multipart form: the second offer. */
    http_accept_parse("multipart/related; type=\"application/dicom\"", &a);
    assert_int_equal(http_accept_choose(&a, metadata, 2, NULL), 1);
}

static void test_wildcards_and_q(void **state)
{
    http_accept a;
    const http_accept_item *m;
    const http_offer offers[] = {
        { "application/dicom+json", NULL, NULL },
        { "application/json", NULL, NULL },
    };
    const http_offer frames[] = {
        { "multipart/related", "application/octet-stream", EXPLICIT_LE },
        { "multipart/related", "image/jpeg", JPEG_BASELINE },
    };

    (void)state;
    assert_int_equal(http_accept_parse("*/*", &a), CP_OK);
    assert_int_equal(http_accept_choose(&a, offers, 2, NULL), 0);

    /* q orders the items; the most specific match decides an offer's q. */
    assert_int_equal(http_accept_parse("application/dicom+json;q=0.5, application/json, "
                                       "*/*;q=0.1", &a),
                     CP_OK);
    assert_string_equal(a.items[0].media, "application/json");
    assert_int_equal(a.items[1].q, 500);
    assert_int_equal(a.items[2].q, 100);
    assert_int_equal(http_accept_choose(&a, offers, 2, NULL), 1);
    assert_int_equal(http_accept_parse("application/*;q=0.9, application/dicom+json;q=0.2",
                                       &a),
                     CP_OK);
    assert_int_equal(http_accept_choose(&a, offers, 2, &m), 1);
    assert_int_equal(m->q, 900);

    /* A client that wants JPEG frames gets them; one that wants none of ours: 406. */
    http_accept_parse("multipart/related; type=\"image/jpeg\"; transfer-syntax=" JPEG_BASELINE,
                      &a);
    assert_int_equal(http_accept_choose(&a, frames, 2, NULL), 1);
    http_accept_parse("multipart/related; type=\"image/jp2\"", &a);
    assert_int_equal(http_accept_choose(&a, frames, 2, NULL), -1);
    http_accept_parse("multipart/related; type=application/octet-stream; transfer-syntax="
                      "1.2.840.10008.1.2.4.90", &a);
    assert_int_equal(http_accept_choose(&a, frames, 2, NULL), -1);
    http_accept_parse("text/html", &a);
    assert_int_equal(http_accept_choose(&a, offers, 2, NULL), -1);

    /* A wildcard offer learns the transfer syntax asked for. */
    {
        const http_offer any[] = { { "multipart/related", "application/octet-stream", NULL } };

        http_accept_parse("multipart/related;type=application/octet-stream;q=0.9;"
                          "transfer-syntax=" JPEG_BASELINE, &a);
        assert_int_equal(http_accept_choose(&a, any, 1, &m), 0);
        assert_string_equal(m->transfer_syntax, JPEG_BASELINE);
        assert_int_equal(m->q, 900);
    }
}

static void test_garbage(void **state)
{
    http_accept a;
    const http_offer offers[] = { { "application/dicom+json", NULL, NULL } };
    char longv[600];

    (void)state;
    assert_int_equal(http_accept_parse(NULL, &a), CP_OK);
    assert_int_equal(a.count, 0);
    assert_int_equal(http_accept_choose(&a, offers, 1, NULL), 0);
    assert_int_equal(http_accept_parse("", &a), CP_OK);
    assert_int_equal(http_accept_parse("garbage", &a), CP_ERR_MALFORMED);
    assert_int_equal(http_accept_choose(&a, offers, 1, NULL), 0);
    assert_int_equal(http_accept_parse(";;;,,,\"\",=,a/b/c", &a), CP_ERR_MALFORMED);
    assert_int_equal(http_accept_parse("application/dicom+json; q=\"x\"; type=\"unterminated",
                                       &a),
                     CP_OK);
    assert_int_equal(a.items[0].q, 1000);
    assert_int_equal(http_accept_parse("junk, application/dicom+json, ;x=y", &a), CP_OK);
    assert_int_equal(a.count, 1);

    memset(longv, 'a', sizeof(longv) - 1);
    longv[sizeof(longv) - 1] = 0;
    longv[10] = '/';
    assert_int_equal(http_accept_parse(longv, &a), CP_ERR_MALFORMED);

    /* More items than kept: the first ones stay. */
    {
        char many[4096] = "";

        for (int i = 0; i < 100; i++)
            strcat(many, "a/b, ");
        assert_int_equal(http_accept_parse(many, &a), CP_OK);
        assert_int_equal(a.count, HTTP_ACCEPT_ITEMS_MAX);
        assert_true(a.truncated);
    }
}

static void test_header_param(void **state)
{
    char v[32];

    (void)state;
    assert_int_equal(http_header_param("multipart/related; type=\"application/dicom\"; "
                                       "boundary=\"x\\\"y\"", "BOUNDARY", v, sizeof(v)),
                     CP_OK);
    assert_string_equal(v, "x\"y");
    assert_int_equal(http_header_param("text/plain", "charset", v, sizeof(v)),
                     CP_ERR_NOT_FOUND);
    assert_int_equal(http_header_param("a/b; n=0123456789abcdef", "n", v, 8), CP_ERR_LIMIT);
    assert_true(http_media_type_is(" Application/DICOM ; x=y", "application/dicom"));
    assert_false(http_media_type_is("application/dicom+json", "application/dicom"));
}

static void test_base_url(void **state)
{
    char url[256];
    http_forward_info in = { .host = "pacs.local:8042" };

    (void)state;
    assert_int_equal(http_base_url(&in, url, sizeof(url)), CP_OK);
    assert_string_equal(url, "http://pacs.local:8042");

    /* X-Forwarded-* are ignored unless the proxy is trusted. */
    in.x_forwarded_proto = "https";
    in.x_forwarded_host = "viewer.example.org, inner";
    in.x_forwarded_prefix = "/pacs/";
    assert_int_equal(http_base_url(&in, url, sizeof(url)), CP_OK);
    assert_string_equal(url, "http://pacs.local:8042");
    in.trust_proxy = true;
    assert_int_equal(http_base_url(&in, url, sizeof(url)), CP_OK);
    assert_string_equal(url, "https://viewer.example.org/pacs");
    in.x_forwarded_port = "8443";
    assert_int_equal(http_base_url(&in, url, sizeof(url)), CP_OK);
    assert_string_equal(url, "https://viewer.example.org:8443/pacs");

    /* Forwarded's first element wins (RFC 7239 4). */
    in.forwarded = "for=192.0.2.60;proto=HTTPS;host=\"[2001:db8::1]:4443\", for=10.0.0.1";
    assert_int_equal(http_base_url(&in, url, sizeof(url)), CP_OK);
    assert_string_equal(url, "https://[2001:db8::1]:4443/pacs");

    /* Implausible values fall back. */
    in = (http_forward_info){ .trust_proxy = true, .tls = true,
                              .x_forwarded_proto = "javascript",
                              .x_forwarded_host = "evil.org/path",
                              .x_forwarded_prefix = "/a b",
                              .host = "h\r\nx" };
    assert_int_equal(http_base_url(&in, url, sizeof(url)), CP_OK);
    assert_string_equal(url, "https://localhost");
    assert_int_equal(http_base_url(&in, url, 8), CP_ERR_LIMIT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ohif_frames),
        cmocka_unit_test(test_unquoted_and_repeated),
        cmocka_unit_test(test_dicomweb_client_list),
        cmocka_unit_test(test_wildcards_and_q),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_header_param),
        cmocka_unit_test(test_base_url),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
