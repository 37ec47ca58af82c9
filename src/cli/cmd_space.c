/* SPDX-License-Identifier: MIT */
/* profilectl space / settings: create and list spaces, read and replace identity settings. */
#include <stdio.h>
#include <string.h>

#include "cli_int.h"
#include "ps/ingest.h"

#define SETTINGS_MAX_BYTES (1024 * 1024)

int cmd_space(cli *c)
{
    const char *settings_path = cli_take_option(c, "--settings");
    const char *preset = cli_take_option(c, "--preset");
    int rc = cli_no_more_options(c);
    if (rc)
        return rc;
    if (c->argc == 1 && strcmp(c->argv[0], "list") == 0) {
        char **names;
        size_t count;
        ps_status st = ps_space_list(c->data_dir, &names, &count);
        if (st != PS_OK)
            return cli_fail(cli_exit_code(st), "cannot list spaces: %s", ps_status_str(st));
        if (c->json) {
            fputs("[", stdout);
            for (size_t i = 0; i < count; i++)
                printf("%s\"%s\"", i ? "," : "", names[i]); /* names are [A-Za-z0-9_-] */
            fputs("]\n", stdout);
        } else {
            for (size_t i = 0; i < count; i++)
                printf("%s\n", names[i]);
        }
        ps_space_list_free(names, count);
        return EXIT_OK;
    }
    if (c->argc != 2 || strcmp(c->argv[0], "create") != 0)
        return cli_fail(EXIT_USAGE, "usage: profilectl space create SPACE [--settings FILE | "
                                    "--preset NAME] | space list");
    if (settings_path && preset)
        return cli_fail(EXIT_USAGE, "--settings and --preset exclude each other: a preset is a "
                                    "settings file (profilectl settings get prints it)");
    const char *preset_json = preset ? ps_rules_preset(preset) : NULL;
    if (preset && preset_json == NULL)
        return cli_fail(EXIT_USAGE, "unknown preset '%s' (known: %s)", preset,
                        ps_rules_preset_names());
    const char *name = c->argv[1];
    if (!ps_space_name_valid(name))
        return cli_fail(EXIT_INVALID,
                        "invalid space name '%s' (1-64 characters of A-Z a-z 0-9 _ -)", name);
    ps_buf settings;
    ps_buf_init(&settings);
    if (settings_path && (rc = cli_read_file(settings_path, SETTINGS_MAX_BYTES, &settings))) {
        ps_buf_clear(&settings);
        return rc;
    }
    ps_diags d;
    if (preset_json)
        ps_buf_puts(&settings, preset_json);
    ps_status st = ps_space_create(
        c->data_dir, name, settings_path || preset ? (char *)settings.ptr : NULL, settings.len, &d);
    ps_buf_clear(&settings);
    if (st == PS_EINVAL) {
        cli_print_diags(&d);
        return cli_fail(EXIT_INVALID, "settings in %s are invalid; space not created",
                        settings_path ? settings_path : "the preset");
    }
    if (st == PS_ECONFLICT)
        return cli_fail(EXIT_INVALID, "space '%s' already exists", name);
    if (st != PS_OK)
        return cli_fail(cli_exit_code(st), "cannot create space '%s': %s%s", name,
                        ps_status_str(st), cli_status_hint(st));
    if (c->json)
        printf("{\"space\":\"%s\",\"created\":true%s%s%s}\n", name, preset ? ",\"preset\":\"" : "",
               preset ? preset : "", preset ? "\"" : "");
    else
        printf("created space %s%s%s\n", name, preset ? " with preset " : "", preset ? preset : "");
    return EXIT_OK;
}

int cmd_settings(cli *c)
{
    const char *replicate = cli_take_option(c, "--replicate");
    int rc = cli_no_more_options(c);
    if (rc)
        return rc;
    const char *sub = c->argc > 0 ? c->argv[0] : "";
    ps_buf buf;
    ps_buf_init(&buf);
    ps_diags d;
    if (strcmp(sub, "check") == 0 && c->argc == 2) {
        if ((rc = cli_read_file(c->argv[1], SETTINGS_MAX_BYTES, &buf)) == EXIT_OK) {
            ps_rules *r;
            ps_status st = ps_rules_parse((const char *)buf.ptr, buf.len, &r, &d);
            if (st == PS_OK) {
                ps_rules_free(r);
                if (c->json)
                    printf("{\"valid\":true}\n");
                else
                    printf("%s: valid\n", c->argv[1]);
            } else {
                if (c->json)
                    cli_json_diags(&d);
                else
                    cli_print_diags(&d);
                rc = cli_fail(EXIT_INVALID, "%s: %zu problem(s)", c->argv[1], d.count + d.dropped);
            }
        }
        ps_buf_clear(&buf);
        return rc;
    }
    if (strcmp(sub, "get") == 0 && c->argc == 2) {
        ps_space *sp;
        if ((rc = cli_open_space(c, c->argv[1], true, &sp)))
            return rc;
        ps_status st = ps_space_settings_get(sp, &buf);
        if (st == PS_OK)
            fwrite(buf.ptr, 1, buf.len, stdout);
        else
            rc = cli_fail(cli_exit_code(st), "cannot read settings: %s", ps_status_str(st));
        ps_buf_clear(&buf);
        ps_space_close(sp);
        return rc;
    }
    if (strcmp(sub, "set") == 0 && c->argc == 3) {
        if ((rc = cli_read_file(c->argv[2], SETTINGS_MAX_BYTES, &buf)) != EXIT_OK) {
            ps_buf_clear(&buf);
            return rc;
        }
        ps_space *sp;
        if ((rc = cli_open_space(c, c->argv[1], false, &sp))) {
            ps_buf_clear(&buf);
            return rc;
        }
        ps_status st;
        uint64_t seq = 0;
        if (replicate == NULL &&
            (rc = cli_refuse_replicated(sp, "settings set",
                                        "add --replicate nats://HOST:PORT to change them on "
                                        "every node through the stream")) != EXIT_OK) {
            ps_buf_clear(&buf);
            ps_space_close(sp);
            return rc;
        }
        if (replicate) { /* checked here, stored by every node at its place in the stream */
            ps_rules *r = NULL;
            st = ps_rules_parse((const char *)buf.ptr, buf.len, &r, &d);
            if (st == PS_OK)
                ps_rules_free(r);
            if (st == PS_OK &&
                (rc = cli_repl_publish(replicate, sp, PS_REPL_SETTINGS,
                                       (ps_slice){buf.ptr, buf.len}, &seq)) != EXIT_OK) {
                ps_buf_clear(&buf);
                ps_space_close(sp);
                return rc;
            }
        } else {
            st = ps_space_settings_set(sp, (const char *)buf.ptr, buf.len, &d);
        }
        if (st == PS_OK && replicate) {
            if (c->json)
                printf("{\"valid\":true,\"published\":true,\"sequence\":%llu}\n",
                       (unsigned long long)seq);
            else
                printf("settings of %s published to its stream at sequence %llu; every node "
                       "applies them there\n",
                       c->argv[1], (unsigned long long)seq);
        } else if (st == PS_EINVAL) {
            if (c->json)
                cli_json_diags(&d);
            else
                cli_print_diags(&d);
            rc = cli_fail(EXIT_INVALID, "settings not applied");
        } else if (st != PS_OK) {
            rc = cli_fail(cli_exit_code(st), "cannot apply settings: %s", ps_status_str(st));
        } else if (c->json) {
            printf("{\"valid\":true,\"updated\":true}\n");
        } else {
            printf("settings of %s updated; they apply to events processed from now on\n",
                   c->argv[1]);
        }
        ps_buf_clear(&buf);
        ps_space_close(sp);
        return rc;
    }
    return cli_fail(EXIT_USAGE,
                    "usage: profilectl settings get SPACE | set SPACE FILE [--replicate URL] | "
                    "check FILE");
}

/* profilectl snapshot SPACE DIR: a consistent copy of the space that DIR can serve as a data
 * directory (ps_space_snapshot). */
int cmd_snapshot(cli *c)
{
    int rc = cli_no_more_options(c);
    if (rc)
        return rc;
    if (c->argc != 2)
        return cli_fail(EXIT_USAGE, "usage: profilectl snapshot SPACE DIR");
    ps_space *sp;
    if ((rc = cli_open_space(c, c->argv[0], true, &sp)))
        return rc;
    uint64_t records = 0, log_seq = 0;
    ps_status st = ps_space_snapshot(sp, c->argv[1], &records, &log_seq);
    ps_space_close(sp);
    if (st == PS_ECONFLICT)
        return cli_fail(EXIT_INVALID,
                        "%s already holds a space '%s'; snapshot into another directory",
                        c->argv[1], c->argv[0]);
    if (st != PS_OK)
        return cli_fail(cli_exit_code(st), "cannot snapshot space '%s': %s", c->argv[0],
                        ps_status_str(st));
    /* a replicated space's copy records where it stands in the stream: a node started on
     * it reads the stream from there on (docs/replication.md) */
    uint64_t stream_seq = 0;
    bool replicated = false;
    if (ps_space_open(c->argv[1], c->argv[0], true, &sp) == PS_OK) {
        replicated = ps_ingest_stream_applied(sp, &stream_seq) == PS_OK;
        ps_space_close(sp);
    }
    char stream[48] = "";
    if (c->json) {
        ps_buf b;
        ps_buf_init(&b);
        ps_buf_json_cstr(&b, c->argv[1]);
        if (replicated)
            snprintf(stream, sizeof stream, ",\"stream_seq\":%llu", (unsigned long long)stream_seq);
        printf("{\"space\":\"%s\",\"data\":%s,\"log_seq\":%llu,\"records\":%llu%s}\n", c->argv[0],
               (const char *)b.ptr, (unsigned long long)log_seq, (unsigned long long)records,
               stream);
        ps_buf_clear(&b);
    } else {
        if (replicated)
            snprintf(stream, sizeof stream, ", stream sequence %llu",
                     (unsigned long long)stream_seq);
        printf("snapshot of %s at log message %llu%s (%llu records) in %s/spaces/%s\n", c->argv[0],
               (unsigned long long)log_seq, stream, (unsigned long long)records, c->argv[1],
               c->argv[0]);
    }
    return EXIT_OK;
}
