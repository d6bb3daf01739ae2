/* The test tables of each mgmt test file, run by test_main.c. */
#ifndef OVHA_MGMT_TESTS_H
#define OVHA_MGMT_TESTS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

extern const struct CMUnitTest mgmt_parser_tests[];
extern const size_t mgmt_parser_ntests;
extern const struct CMUnitTest mgmt_status_tests[];
extern const size_t mgmt_status_ntests;
extern const struct CMUnitTest mgmt_cmd_tests[];
extern const size_t mgmt_cmd_ntests;
extern const struct CMUnitTest mgmt_conn_tests[];
extern const size_t mgmt_conn_ntests;
extern const struct CMUnitTest mgmt_replay_tests[];
extern const size_t mgmt_replay_ntests;

#endif
