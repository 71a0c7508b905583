// send_event: an event for a run's "wait_for" step, by run id or by the caller's idempotency key.
#include "api/access.hpp"
#include "pg/roles.hpp"
#include "pg/spi.hpp"
#include "store/events.hpp"

extern "C" {
PG_FUNCTION_INFO_V1(pw_send_event);
PG_FUNCTION_INFO_V1(pw_send_event_by_key);
}

using namespace pw;
using namespace pw::api;

namespace {

constexpr int kMaxEventName = 200;

char *checked_event(FunctionCallInfo fcinfo, int argno) {
    if (PG_ARGISNULL(argno))
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("event must not be null"),
                        errhint("Name the event a \"wait_for\" step waits for.")));
    char *e = text_to_cstring(PG_GETARG_TEXT_PP(argno));
    if (e[0] == '\0' || strlen(e) > kMaxEventName)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("an event name must have 1 to %d bytes", kMaxEventName),
                        errhint("Use the name a \"wait_for\" step of the run waits for (at most %d bytes in UTF-8).", kMaxEventName)));
    return e;
}

Jsonb *checked_payload(FunctionCallInfo fcinfo, int argno) {
    if (PG_ARGISNULL(argno))
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("payload must not be null"),
                        errhint("Send '{}' for an event without a payload.")));
    return PG_GETARG_JSONB_P(argno);
}

bool send(int64 run_id, const char *event, Jsonb *payload) {
    store::SendResult r = store::send_event(run_id, event, payload, GetUserId());
    // (an admin sees every run: for one, "not visible" means "does not exist", which it may be told)
    if (r == store::SendResult::NotVisible && pg::is_admin(GetUserId()))
        ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT), errmsg("run %lld does not exist", (long long)run_id),
                        errhint("Runs deleted by retention or purge_runs() are gone with their mailboxes.")));
    if (r == store::SendResult::NotVisible)
        ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
                        errmsg("permission denied to send events to run %lld", (long long)run_id),
                        errhint("Events may be sent by the run's submitter, its pipeline's owner and admins.")));
    return r == store::SendResult::Stored;
}

}  // namespace

extern "C" Datum pw_send_event(PG_FUNCTION_ARGS) {
    require_writable("send_event");
    if (PG_ARGISNULL(0))
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("run_id must not be null"),
                        errhint("Pass the id create_run() returned.")));
    int64 run_id = PG_GETARG_INT64(0);
    char *event = checked_event(fcinfo, 1);
    Jsonb *payload = checked_payload(fcinfo, 2);
    pg::spi_connect();
    require_schema_02();
    bool stored = send(run_id, event, payload);
    SPI_finish();
    PG_RETURN_BOOL(stored);
}

extern "C" Datum pw_send_event_by_key(PG_FUNCTION_ARGS) {
    require_writable("send_event");
    char *pipeline = checked_name(fcinfo, 0, "pipeline name");
    if (PG_ARGISNULL(1))
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("idempotency_key must not be null"),
                        errhint("Pass the idempotency key the run was created with.")));
    char *key = text_to_cstring(PG_GETARG_TEXT_PP(1));
    char *event = checked_event(fcinfo, 2);
    Jsonb *payload = checked_payload(fcinfo, 3);
    pg::spi_connect();
    require_schema_02();
    int64 run_id = store::run_by_key(pipeline, key, GetUserId());
    if (run_id == 0)
        ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT),
                        errmsg("you have no run of pipeline \"%s\" with idempotency key \"%s\"", pipeline, key),
                        errhint("send_event(pipeline, idempotency_key, ...) addresses runs the caller submitted "
                                "with that key; use send_event(run_id, ...) for others.")));
    bool stored = send(run_id, event, payload);
    SPI_finish();
    PG_RETURN_BOOL(stored);
}
