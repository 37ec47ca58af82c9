/* SPDX-License-Identifier: MIT */
/* Sources: write keys found by hash, and the per-source allow list of web origins (what a
 * browser's Origin header is checked against on the Tracking API). */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "ps/source.h"

static bool norm(const char *in, const char *want)
{
    char out[PS_ORIGIN_MAX + 1] = "";
    bool ok = ps_origin_normalize(in, strlen(in), out);
    if (!ok)
        return want == NULL;
    return want != NULL && strcmp(out, want) == 0;
}

static void test_origin_normalize(void)
{
    CHECK(norm("https://shop.example", "https://shop.example"));
    CHECK(norm("HTTPS://Shop.Example:8443", "https://shop.example:8443"));
    CHECK(norm("http://localhost:3000", "http://localhost:3000"));
    CHECK(norm("http://127.0.0.1", "http://127.0.0.1"));
    CHECK(norm("https://*.shop.example", "https://*.shop.example"));
    CHECK(norm("https://shop.example/", NULL)); /* a path */
    CHECK(norm("https://shop.example/x", NULL));
    CHECK(norm("ftp://shop.example", NULL)); /* a scheme browsers never send here */
    CHECK(norm("shop.example", NULL));
    CHECK(norm("https://", NULL));
    CHECK(norm("https://a..b", NULL));
    CHECK(norm("https://shop.example:", NULL));
    CHECK(norm("https://shop.example:123456", NULL));
    CHECK(norm("https://shop.example:80:80", NULL));
    CHECK(norm("https://*.", NULL));
    CHECK(norm("https://a.*.example", NULL)); /* a star only in front */
    CHECK(norm("https://user@shop.example", NULL));
    CHECK(norm("https://[::1]", NULL));
    CHECK(norm("null", NULL));
    char longer[PS_ORIGIN_MAX + 16];
    memset(longer, 'a', sizeof longer);
    memcpy(longer, "https://", 8);
    longer[sizeof longer - 1] = 0;
    char out[PS_ORIGIN_MAX + 1];
    CHECK(!ps_origin_normalize(longer, strlen(longer), out));
end:;
}

static bool allowed(const ps_source_info *src, const char *origin)
{
    return ps_source_origin_allowed(src, origin, origin ? strlen(origin) : 0);
}

static void test_origin_allow_list(void)
{
    const char *dir = tmpdir_make();
    ps_sources *cat = NULL;
    ps_source_info src, found;
    size_t bad = 0;
    CHECK(ps_sources_open(dir, true, &cat) == PS_OK);
    CHECK(ps_source_create(cat, "s1", "web", 1, &src) == PS_OK);
    CHECK(ps_source_find(cat, src.write_key, strlen(src.write_key), true, &found) == PS_OK);
    CHECK_EQ_STR(found.origins, "");
    CHECK(allowed(&found, "https://anything.example")); /* no list: any origin */
    CHECK(allowed(&found, NULL));

    const char *list[] = {"https://Shop.example", "https://*.shop.example:8443",
                          "https://shop.example", "http://localhost:3000"};
    CHECK(ps_source_set_origins(cat, "s1", "web", list, 4, &bad) == PS_OK);
    CHECK(ps_source_find(cat, src.write_key, strlen(src.write_key), true, &found) == PS_OK);
    /* sorted, lower case, the duplicate once */
    CHECK_EQ_STR(found.origins,
                 "http://localhost:3000\nhttps://*.shop.example:8443\nhttps://shop.example");
    CHECK(allowed(&found, "https://shop.example"));
    CHECK(allowed(&found, "HTTPS://SHOP.EXAMPLE"));
    CHECK(allowed(&found, "http://localhost:3000"));
    CHECK(allowed(&found, "https://www.shop.example:8443"));
    CHECK(allowed(&found, "https://a.b.shop.example:8443"));
    CHECK(allowed(&found, NULL));                             /* a server, not a browser */
    CHECK(!allowed(&found, "http://shop.example"));           /* another scheme */
    CHECK(!allowed(&found, "https://shop.example:444"));      /* another port */
    CHECK(!allowed(&found, "https://www.shop.example"));      /* the wildcard has a port */
    CHECK(!allowed(&found, "https://shop.example:8443"));     /* the apex is not a subdomain */
    CHECK(!allowed(&found, "https://evilshop.example:8443")); /* not a subdomain either */
    CHECK(!allowed(&found, "https://*.shop.example:8443"));   /* a pattern is not an origin */
    CHECK(!allowed(&found, "http://localhost:30000"));
    CHECK(!allowed(&found, "null"));
    CHECK(!allowed(&found, ""));

    /* by source id too; a bad origin names its index and changes nothing */
    const char *worse[] = {"https://ok.example", "https://bad.example/path"};
    CHECK(ps_source_set_origins(cat, "s1", src.source_id, worse, 2, &bad) == PS_EINVAL);
    CHECK_EQ_INT(bad, 1);
    CHECK(ps_source_find(cat, src.write_key, strlen(src.write_key), true, &found) == PS_OK);
    CHECK(allowed(&found, "https://shop.example"));
    CHECK(!allowed(&found, "https://ok.example"));
    /* a request without Origin reads no list: the source and space are found all the same */
    CHECK(ps_source_find(cat, src.write_key, strlen(src.write_key), false, &found) == PS_OK);
    CHECK_EQ_STR(found.space, "s1");
    CHECK_EQ_STR(found.origins, "");
    CHECK(ps_source_set_origins(cat, "s1", "nope", list, 1, &bad) == PS_ENOTFOUND);
    CHECK(ps_source_set_origins(cat, "s2", "web", list, 1, &bad) == PS_ENOTFOUND);
    const char *many[PS_ORIGINS_MAX + 1];
    for (size_t i = 0; i <= PS_ORIGINS_MAX; i++)
        many[i] = "https://x.example";
    CHECK(ps_source_set_origins(cat, "s1", "web", many, PS_ORIGINS_MAX + 1, &bad) == PS_EINVAL);
    CHECK_EQ_INT(bad, PS_ORIGINS_MAX + 1);
    CHECK(ps_source_set_origins(cat, "s1", "web", many, PS_ORIGINS_MAX, &bad) == PS_OK);

    /* cleared: any origin again */
    CHECK(ps_source_set_origins(cat, "s1", src.source_id, NULL, 0, &bad) == PS_OK);
    CHECK(ps_source_find(cat, src.write_key, strlen(src.write_key), true, &found) == PS_OK);
    CHECK(allowed(&found, "https://elsewhere.example"));
end:
    ps_sources_close(cat);
    tmpdir_remove(dir);
}

int main(int argc, char **argv)
{
    static const test_case tests[] = {
        {"origin_normalize", test_origin_normalize},
        {"origin_allow_list", test_origin_allow_list},
    };
    return test_main(argc, argv, tests, sizeof tests / sizeof tests[0]);
}
