/* SPDX-License-Identifier: MIT */
/* profilectl token create|list|revoke: Profile API access tokens of a space. The token is
 * printed once, alone, on stdout; the store keeps only its hash. A token is an admin token
 * (reads and changes) unless created with --role read (reads only). */
#include <stdio.h>
#include <string.h>

#include "cli_int.h"
#include "ps/auth.h"
#include "ps/clock.h"

typedef struct list_ctx {
    bool json;
    size_t n;
} list_ctx;

static bool print_token(void *ud, const char *name, ps_token_role role, int64_t created_ms)
{
    list_ctx *l = ud;
    char tb[PS_TIME_BUF];
    ps_time_format(created_ms, tb);
    if (l->json) /* names are [A-Za-z0-9_-] */
        printf("%s{\"name\":\"%s\",\"role\":\"%s\",\"created_at\":\"%s\"}", l->n ? "," : "", name,
               ps_token_role_name(role), tb);
    else if (l->n == 0) /* a header over the first row only: no tokens prints nothing */
        printf("%-24s %-6s %s\n%-24s %-6s %s\n", "NAME", "ROLE", "CREATED", name,
               ps_token_role_name(role), tb);
    else
        printf("%-24s %-6s %s\n", name, ps_token_role_name(role), tb);
    l->n++;
    return true;
}

int cmd_token(cli *c)
{
    const char *name = cli_take_option(c, "--name");
    const char *role_arg = cli_take_option(c, "--role");
    int rc = cli_no_more_options(c);
    if (rc)
        return rc;
    const char *verb = c->argc > 0 ? c->argv[0] : "";
    bool create = strcmp(verb, "create") == 0, list = strcmp(verb, "list") == 0,
         revoke = strcmp(verb, "revoke") == 0;
    if (!((create && c->argc == 2) || (list && c->argc == 2 && !name && !role_arg) ||
          (revoke && c->argc == 3 && !name && !role_arg)))
        return cli_fail(EXIT_USAGE, "usage: profilectl token create SPACE [--name NAME] "
                                    "[--role read|admin] | token list SPACE | token revoke "
                                    "SPACE NAME");
    ps_token_role role = PS_ROLE_ADMIN;
    if (role_arg && !ps_token_role_parse(role_arg, &role))
        return cli_fail(EXIT_INVALID, "invalid --role '%s' (read or admin)", role_arg);
    if (name && !ps_space_name_valid(name))
        return cli_fail(EXIT_INVALID,
                        "invalid token name '%s' (1-64 characters of A-Z a-z 0-9 _ -)", name);
    ps_space *sp;
    if ((rc = cli_open_space(c, c->argv[1], false, &sp)) != EXIT_OK)
        return rc;
    ps_status st;
    if (create) {
        char token[PS_TOKEN_BUF], used[PS_TOKEN_NAME_MAX + 1];
        st = ps_auth_token_create(sp, name, role, ps_clock_now_ms(), token, used);
        if (st == PS_ECONFLICT)
            rc =
                cli_fail(EXIT_INVALID, "space %s already has a token named '%s'", c->argv[1], name);
        else if (st != PS_OK)
            rc = cli_fail(cli_exit_code(st), "cannot create a token: %s", ps_status_str(st));
        else if (c->json)
            printf("{\"token\":\"%s\",\"name\":\"%s\",\"role\":\"%s\"}\n", token, used,
                   ps_token_role_name(role));
        else
            printf("%s\n", token);
    } else if (list) {
        list_ctx l = {c->json, 0};
        if (c->json)
            fputs("[", stdout);
        st = ps_auth_token_list(sp, print_token, &l);
        if (c->json)
            fputs("]\n", stdout);
        if (st != PS_OK)
            rc = cli_fail(cli_exit_code(st), "cannot list tokens: %s", ps_status_str(st));
    } else {
        st = ps_auth_token_revoke(sp, c->argv[2]);
        if (st == PS_ENOTFOUND)
            rc =
                cli_fail(EXIT_NOTFOUND, "space %s has no token named '%s'", c->argv[1], c->argv[2]);
        else if (st != PS_OK)
            rc = cli_fail(cli_exit_code(st), "cannot revoke: %s", ps_status_str(st));
        else if (c->json)
            printf("{\"revoked\":\"%s\"}\n", c->argv[2]);
    }
    ps_space_close(sp);
    return rc;
}
