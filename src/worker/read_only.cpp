#include "worker/read_only.hpp"

#include "pg/spi.hpp"
#include "shmem/shared.hpp"
#include "worker/serve.hpp"

extern "C" {
#include "access/xact.h"
#include "miscadmin.h"
#include "commands/dbcommands.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
}

namespace pw::worker {

namespace {

bool paused = false;  // (this process: whether it said it pauses)
// How long the database's entry says "read-only" after a paused worker's last look (they look every second): with no
// worker left there, the launcher sends one to look again after this -- or at once when the settings change.
constexpr long kNoteMs = 300000;

// The database's name, for the log (its own short transaction: none is open here).
void database_name(char *out) {
    StartTransactionCommand();
    const char *name = get_database_name(MyDatabaseId);
    strlcpy(out, name != nullptr ? name : "?", NAMEDATALEN);
    CommitTransactionCommand();
}

}  // namespace

void read_only_leaving() {
    if (shared::DbState *d = shared::db()) pg_atomic_write_u64(&d->read_only_until, 0);
}

void note_read_only() {
    if (shared::DbState *d = shared::db())
        pg_atomic_write_u64(&d->read_only_until,
                            static_cast<uint64>(TimestampTzPlusMilliseconds(GetCurrentTimestamp(), kNoteMs)));
}

bool read_only_paused() { return paused; }

bool read_only_now(int slot_no) {
    static bool first = true;
    if (first && !DefaultXactReadOnly) read_only_leaving();  // (a new session that is not: the note was old)
    first = false;
    if (DefaultXactReadOnly == paused) return paused;
    paused = DefaultXactReadOnly;
    if (paused) note_read_only();
    else read_only_leaving();
    char db[NAMEDATALEN];
    database_name(db);
    if (paused)
        ereport(LOG, (errmsg("pipeline_worker: worker %d pauses in database \"%s\": its transactions are read-only",
                             slot_no, db),
                      errdetail("default_transaction_read_only is on. No run is claimed or changed while it is; "
                                "none is lost."),
                      errhint("Runs go on once it is off again: in the configuration files (and a reload), or with "
                              "ALTER DATABASE ... RESET default_transaction_read_only.")));
    else
        ereport(LOG, (errmsg("pipeline_worker: worker %d resumes in database \"%s\": default_transaction_read_only "
                             "is off",
                             slot_no, db)));
    return paused;
}

bool read_only_setting_gone() {
    MemoryContext ctx = CurrentMemoryContext;
    volatile bool gone = false;
    PG_TRY();
    {
        begin_work_txn();
        pg::spi_connect();
        Oid types[2] = {OIDOID, OIDOID};
        Datum v[2] = {ObjectIdGetDatum(MyDatabaseId), ObjectIdGetDatum(GetSessionUserId())};
        // (the sources a session takes at its start from pg_db_role_setting; a value there that is not true -- or
        // none at all -- leaves a new session with the configuration files' value)
        int rc = SPI_execute_with_args(
            "SELECT s.source IN ('global', 'database', 'user', 'database user')"
            "   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_db_role_setting d, pg_catalog.unnest(d.setconfig) c"
            "                    WHERE d.setdatabase IN (0, $1) AND d.setrole IN (0, $2)"
            "                      AND CASE WHEN pg_catalog.split_part(c, '=', 1) = 'default_transaction_read_only'"
            "                          THEN pg_catalog.split_part(c, '=', 2)::pg_catalog.bool ELSE false END)"
            "  FROM pg_catalog.pg_settings s WHERE s.name = 'default_transaction_read_only'",
            2, types, v, nullptr, true, 1);
        bool isnull = true;
        if (rc == SPI_OK_SELECT && SPI_processed == 1) {
            Datum v = pg::col(0, 1, &isnull);
            gone = !isnull && DatumGetBool(v);
        }
        SPI_finish();
        PopActiveSnapshot();
        CommitTransactionCommand();
    }
    PG_CATCH();
    {
        abort_work_txn(ctx);
        gone = false;
    }
    PG_END_TRY();
    return gone;
}

bool renew_read_only_note() {
    shared::DbState *d = shared::db();
    if (d == nullptr) return true;
    uint64 seen = pg_atomic_read_u64(&d->read_only_until);
    if (seen == 0) return false;  // (forgotten: not brought back before a look at the settings)
    uint64 until = static_cast<uint64>(TimestampTzPlusMilliseconds(GetCurrentTimestamp(), kNoteMs));
    return pg_atomic_compare_exchange_u64(&d->read_only_until, &seen, until) || pg_atomic_read_u64(&d->read_only_until) != 0;
}

void forget_read_only_notes(Oid dboid) {
    shared::State *st = shared::state();
    if (st == nullptr) return;
    for (int i = 0; i < shared::kMaxDatabases; i++) {
        shared::DbState *d = &st->dbs[i];
        Oid oid = pg_atomic_read_u32(&d->dboid);
        if (oid != 0 && (!OidIsValid(dboid) || oid == dboid)) pg_atomic_write_u64(&d->read_only_until, 0);
    }
}

}  // namespace pw::worker
