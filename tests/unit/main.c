/* Unit-test runner: every core suite in one Check runner (core archive only, never the hooks). */
#include <check.h>
#include <stdlib.h>

Suite *config_suite(void);
Suite *propagation_suite(void);
Suite *sampler_suite(void);
Suite *ids_suite(void);
Suite *span_suite(void);
Suite *queue_suite(void);
Suite *encode_suite(void);
Suite *encode_json_suite(void);
Suite *exporter_suite(void);
Suite *http_suite(void);
Suite *exchange_suite(void);
Suite *sql_suite(void);
Suite *envcarrier_suite(void);
Suite *url_suite(void);
Suite *host_suite(void);
Suite *funcspec_suite(void);
Suite *dwarfline_suite(void);

int main(void)
{
	SRunner *sr = srunner_create(config_suite());
	srunner_add_suite(sr, propagation_suite());
	srunner_add_suite(sr, sampler_suite());
	srunner_add_suite(sr, ids_suite());
	srunner_add_suite(sr, span_suite());
	srunner_add_suite(sr, queue_suite());
	srunner_add_suite(sr, encode_suite());
	srunner_add_suite(sr, encode_json_suite());
	srunner_add_suite(sr, exporter_suite());
	srunner_add_suite(sr, http_suite());
	srunner_add_suite(sr, exchange_suite());
	srunner_add_suite(sr, sql_suite());
	srunner_add_suite(sr, envcarrier_suite());
	srunner_add_suite(sr, url_suite());
	srunner_add_suite(sr, host_suite());
	srunner_add_suite(sr, funcspec_suite());
	srunner_add_suite(sr, dwarfline_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
