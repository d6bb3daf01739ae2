/* Replays of real OpenVPN 2.6.14 transcripts recorded into fixtures/
 * (see fixtures/RECORDED.md): the event sequence each scenario must
 * produce, byte-at-a-time equals whole, and reply/command matching by
 * order against the recorded commands. */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mgmt/tests/mgmt_test.h"
#include "mgmt/tests/tests.h"

struct scenario {
    const char *name;
    size_t connect, reauth, established, disconnect, address, bytecount_cli;
    size_t replies;
};

/* Counts checked by hand against the recordings (grep of the raw files). */
static const struct scenario scenarios[] = {
    { "connect-auth-established", 1, 0, 1, 1, 2, 3, 7 },
    { "deny", 1, 0, 0, 1, 0, 0, 5 },
    { "reauth", 1, 2, 1, 1, 1, 21, 7 },
    { "two-clients", 2, 0, 2, 2, 2, 6, 10 },
    { "status3-waiting", 1, 0, 0, 1, 0, 0, 6 },
    { "hostile-cn", 1, 0, 1, 1, 1, 0, 7 },
    { "env-filter", 1, 0, 0, 1, 0, 0, 7 },
    { "kill-restart", 2, 0, 2, 2, 2, 3, 9 },
    { "controller-reconnect", 1, 0, 0, 2, 0, 0, 5 },
};

/* Loads fixtures/<name><suffix>; false when it is not there. */
static bool load(const char *name,
                 const char *suffix,
                 char **ret,
                 size_t *ret_len)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s%s", MGMT_FIXTURES_DIR, name, suffix);
    return mgmt_test_load(path, ret, ret_len) == 0;
}

/* Every event of one transcript, kept for inspection. */
#define MAXEV 256
struct seq {
    size_t n;
    enum mgmt_event_type type[MAXEV];
    uint64_t cid[MAXEV];
    uint32_t kid[MAXEV];
    size_t nenv[MAXEV];
    char info[MAXEV][128]; /* addr, or a chosen env value */
    bool has_status[MAXEV];
    struct mgmt_status status[MAXEV];
};

static void seq_cb(const struct mgmt_event *ev, void *data)
{
    struct seq *s = data;
    if (s->n >= MAXEV) {
        return;
    }
    size_t i = s->n++;
    s->type[i] = ev->type;
    s->cid[i] = ev->cid;
    s->kid[i] = ev->kid;
    s->nenv[i] = ev->env.n;
    s->info[i][0] = '\0';
    s->has_status[i] = false;
    if (ev->type == MGMT_EV_CLIENT_ADDRESS) {
        snprintf(s->info[i], sizeof(s->info[i]), "%s/%d", ev->addr,
                 ev->primary);
    } else if (ev->env.n > 0) {
        const char *cn = mgmt_env_get(&ev->env, "common_name");
        if (cn == NULL) {
            cn = mgmt_env_get(&ev->env, "X509_0_CN");
        }
        snprintf(s->info[i], sizeof(s->info[i]), "%s", cn ? cn : "");
    } else if (ev->type == MGMT_EV_REPLY_BLOCK) {
        s->has_status[i] =
            mgmt_status_parse(ev->lines, ev->nlines, &s->status[i]) == 0;
    }
}

static struct seq *parse_seq(const char *data, size_t n)
{
    struct seq *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    struct mgmt_parser *p;
    assert_int_equal(mgmt_parser_new(NULL, seq_cb, s, &p), 0);
    for (size_t i = 0; i < n; i++) {
        mgmt_parser_feed(p, data + i, 1);
    }
    mgmt_parser_free(p);
    return s;
}

static void seq_free(struct seq *s)
{
    for (size_t i = 0; i < s->n; i++) {
        if (s->has_status[i]) {
            mgmt_status_free(&s->status[i]);
        }
    }
    free(s);
}

/* The i-th event of type t, or -1. */
static int nth(const struct seq *s, enum mgmt_event_type t, size_t k)
{
    for (size_t i = 0; i < s->n; i++) {
        if (s->type[i] == t && k-- == 0) {
            return (int)i;
        }
    }
    return -1;
}

/* The status-3 block (the one with a CLIENT_LIST header), k-th of them. */
static const struct mgmt_status *status_block(const struct seq *s, size_t k)
{
    for (size_t i = 0; i < s->n; i++) {
        if (s->has_status[i] &&
            s->status[i].nclients + s->status[i].nroutes > 0 && k-- == 0) {
            return &s->status[i];
        }
    }
    return NULL;
}

/* Expected reply kind of a recorded command: 'B' block, 'S' one line,
 * '-' none. */
static char reply_kind(const char *cmd)
{
    if (strcmp(cmd, "version") == 0 || strncmp(cmd, "status", 6) == 0) {
        return 'B';
    }
    if (strncmp(cmd, "version ", 8) == 0 || strcmp(cmd, "exit") == 0 ||
        strcmp(cmd, "quit") == 0) {
        return '-';
    }
    return 'S';
}

/* Splits a commands file into commands; a client-auth block is one. */
static size_t split_commands(char *text, char kinds[], size_t max)
{
    size_t n = 0;
    bool in_block = false;
    for (char *line = strtok(text, "\n"); line != NULL;
         line = strtok(NULL, "\n")) {
        if (in_block) {
            in_block = strcmp(line, "END") != 0;
            continue;
        }
        if (strncmp(line, "client-auth ", 12) == 0) {
            in_block = true;
        }
        char k = reply_kind(line);
        if (k != '-' && n < max) {
            kinds[n++] = k;
        }
    }
    return n;
}

static void check_scenario(const struct scenario *sc)
{
    char *data, *cmds;
    size_t n, cn;
    if (!load(sc->name, ".txt", &data, &n)) {
        print_message("replay: %s.txt not recorded, skipped\n", sc->name);
        return;
    }
    /* Whole and byte-at-a-time agree. */
    struct mgmt_test_rec whole, bytes;
    mgmt_test_rec_init(&whole);
    mgmt_test_rec_init(&bytes);
    assert_int_equal(mgmt_test_parse(data, n, 0, NULL, &whole), 0);
    assert_int_equal(mgmt_test_parse(data, n, 1, NULL, &bytes), 0);
    assert_string_equal(whole.dump.data, bytes.dump.data);
    mgmt_test_rec_free(&bytes);

    const size_t *c = whole.count;
    assert_int_equal(c[MGMT_EV_PARSE_ERROR], 0);
    assert_int_equal(c[MGMT_EV_CLIENT_CONNECT], sc->connect);
    assert_int_equal(c[MGMT_EV_CLIENT_REAUTH], sc->reauth);
    assert_int_equal(c[MGMT_EV_CLIENT_ESTABLISHED], sc->established);
    assert_int_equal(c[MGMT_EV_CLIENT_DISCONNECT], sc->disconnect);
    assert_int_equal(c[MGMT_EV_CLIENT_ADDRESS], sc->address);
    assert_int_equal(c[MGMT_EV_BYTECOUNT_CLI], sc->bytecount_cli);
    assert_int_equal(c[MGMT_EV_INFO], 1);
    size_t replies = c[MGMT_EV_REPLY_SUCCESS] + c[MGMT_EV_REPLY_ERROR] +
                     c[MGMT_EV_REPLY_BLOCK];
    assert_int_equal(replies, sc->replies);

    /* Replies match the recorded commands one for one, in order. */
    if (load(sc->name, ".commands.txt", &cmds, &cn)) {
        char kinds[128];
        size_t ncmd = split_commands(cmds, kinds, sizeof(kinds));
        assert_int_equal(ncmd, replies);
        struct seq *s = parse_seq(data, n);
        size_t r = 0;
        for (size_t i = 0; i < s->n; i++) {
            enum mgmt_event_type t = s->type[i];
            if (t == MGMT_EV_REPLY_BLOCK) {
                assert_int_equal(kinds[r++], 'B');
            } else if (t == MGMT_EV_REPLY_SUCCESS || t == MGMT_EV_REPLY_ERROR) {
                assert_int_equal(kinds[r++], 'S');
            }
        }
        assert_int_equal(r, ncmd);
        seq_free(s);
        ovha_free(cmds);
    }
    mgmt_test_rec_free(&whole);
    ovha_free(data);
}

static void test_replay_scenarios(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++) {
        check_scenario(&scenarios[i]);
    }
}

/* Every recorded transcript, also ones added after this table was made:
 * no parse error, chunking invariance, and every reply block that is a
 * status 3 parses. */
static void test_replay_all_recorded(void **state)
{
    (void)state;
    DIR *d = opendir(MGMT_FIXTURES_DIR);
    assert_non_null(d);
    struct dirent *de;
    size_t nfiles = 0;
    while ((de = readdir(d)) != NULL) {
        if (!mgmt_test_is_transcript(de->d_name) ||
            strncmp(de->d_name, "hand-", 5) == 0) {
            continue;
        }
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", MGMT_FIXTURES_DIR, de->d_name);
        char *data;
        size_t n;
        if (mgmt_test_load(path, &data, &n) != 0) {
            continue;
        }
        struct mgmt_test_rec whole, bytes;
        mgmt_test_rec_init(&whole);
        mgmt_test_rec_init(&bytes);
        whole.keep_status = bytes.keep_status = true;
        assert_int_equal(mgmt_test_parse(data, n, 0, NULL, &whole), 0);
        assert_int_equal(mgmt_test_parse(data, n, 1, NULL, &bytes), 0);
        assert_string_equal(whole.dump.data, bytes.dump.data);
        if (whole.count[MGMT_EV_PARSE_ERROR] != 0) {
            fail_msg("%s: parse error", de->d_name);
        }
        assert_true(whole.nevents > 0);
        mgmt_test_rec_free(&whole);
        mgmt_test_rec_free(&bytes);
        ovha_free(data);
        nfiles++;
    }
    closedir(d);
    print_message("replay: %zu recorded transcripts\n", nfiles);
}

static struct seq *load_seq(const char *name)
{
    char *data;
    size_t n;
    if (!load(name, ".txt", &data, &n)) {
        return NULL;
    }
    struct seq *s = parse_seq(data, n);
    ovha_free(data);
    return s;
}

static void test_replay_connect_auth_established(void **state)
{
    (void)state;
    struct seq *s = load_seq("connect-auth-established");
    if (s == NULL) {
        skip();
    }
    int i = nth(s, MGMT_EV_CLIENT_CONNECT, 0);
    assert_true(i >= 0);
    assert_int_equal(s->cid[i], 0);
    assert_int_equal(s->kid[i], 1);
    assert_string_equal(s->info[i], "alice");
    assert_true(s->nenv[i] > 20);
    /* client-auth's SUCCESS comes before the ADDRESS lines. */
    assert_int_equal(s->type[i + 1], MGMT_EV_REPLY_SUCCESS);
    i = nth(s, MGMT_EV_CLIENT_ADDRESS, 0);
    assert_string_equal(s->info[i], "100.64.0.50/1");
    i = nth(s, MGMT_EV_CLIENT_ADDRESS, 1);
    assert_string_equal(s->info[i], "100.96.77.0/255.255.255.0/0");
    const struct mgmt_status *st = status_block(s, 0);
    assert_non_null(st);
    assert_int_equal(st->nclients, 1);
    assert_string_equal(st->clients[0].cn, "alice");
    assert_string_equal(st->clients[0].vaddr, "100.64.0.50");
    assert_string_equal(st->clients[0].cipher, "AES-256-GCM");
    assert_int_equal(st->nroutes, 2);
    i = nth(s, MGMT_EV_CLIENT_DISCONNECT, 0);
    assert_true(s->nenv[i] > 20);
    seq_free(s);
}

static void test_replay_deny_empty_disconnect(void **state)
{
    (void)state;
    struct seq *s = load_seq("deny");
    if (s == NULL) {
        skip();
    }
    int i = nth(s, MGMT_EV_CLIENT_DISCONNECT, 0);
    assert_true(i >= 0);
    assert_int_equal(s->nenv[i], 0);
    assert_int_equal(nth(s, MGMT_EV_CLIENT_ESTABLISHED, 0), -1);
    seq_free(s);
}

static void test_replay_reauth_kids(void **state)
{
    (void)state;
    struct seq *s = load_seq("reauth");
    if (s == NULL) {
        skip();
    }
    assert_int_equal(s->kid[nth(s, MGMT_EV_CLIENT_CONNECT, 0)], 1);
    assert_int_equal(s->kid[nth(s, MGMT_EV_CLIENT_REAUTH, 0)], 3);
    assert_int_equal(s->kid[nth(s, MGMT_EV_CLIENT_REAUTH, 1)], 4);
    seq_free(s);
}

static void test_replay_waiting_rows(void **state)
{
    (void)state;
    static const char *const names[] = { "status3-waiting",
                                         "controller-reconnect" };
    size_t seen = 0;
    for (size_t k = 0; k < 2; k++) {
        struct seq *s = load_seq(names[k]);
        if (s == NULL) {
            continue;
        }
        seen++;
        const struct mgmt_status *st = status_block(s, 0);
        assert_non_null(st);
        assert_int_equal(st->nclients, 1);
        assert_string_equal(st->clients[0].vaddr, "");
        assert_string_equal(st->clients[0].cn, "bob");
        assert_string_equal(st->clients[0].username, "UNDEF");
        assert_string_equal(st->clients[0].cipher, "BF-CBC");
        seq_free(s);
    }
    if (seen == 0) {
        skip();
    }
}

static void test_replay_hostile_cn(void **state)
{
    (void)state;
    struct seq *s = load_seq("hostile-cn");
    if (s == NULL) {
        skip();
    }
    int i = nth(s, MGMT_EV_CLIENT_CONNECT, 0);
    const char *cn = "evil \"quoted\" o'name\\x";
    assert_string_equal(s->info[i], cn);
    const struct mgmt_status *st = status_block(s, 0);
    assert_non_null(st);
    assert_string_equal(st->clients[0].cn, cn);
    /* Such a CN can never be put into a command. */
    assert_int_equal(mgmt_check_quoted(cn, MGMT_MAX_TOKEN), OVHA_EINJECT);
    struct ovha_buf b;
    ovha_buf_init(&b);
    assert_int_equal(mgmt_cmd_client_deny(&b, 0, 1, cn, NULL), OVHA_EINJECT);
    assert_int_equal(b.len, 0);
    ovha_buf_free(&b);
    seq_free(s);
}

static void test_replay_env_filter(void **state)
{
    (void)state;
    struct seq *s = load_seq("env-filter");
    if (s == NULL) {
        skip();
    }
    int i = nth(s, MGMT_EV_CLIENT_CONNECT, 0);
    /* Filtered: no common_name, but X509_0_CN and raw peer info. */
    assert_string_equal(s->info[i], "alice");
    assert_true(s->nenv[i] >= 10 && s->nenv[i] < 40);
    seq_free(s);
}

const struct CMUnitTest mgmt_replay_tests[] = {
    cmocka_unit_test(test_replay_scenarios),
    cmocka_unit_test(test_replay_all_recorded),
    cmocka_unit_test(test_replay_connect_auth_established),
    cmocka_unit_test(test_replay_deny_empty_disconnect),
    cmocka_unit_test(test_replay_reauth_kids),
    cmocka_unit_test(test_replay_waiting_rows),
    cmocka_unit_test(test_replay_hostile_cn),
    cmocka_unit_test(test_replay_env_filter),
};
const size_t mgmt_replay_ntests =
    sizeof(mgmt_replay_tests) / sizeof(mgmt_replay_tests[0]);
