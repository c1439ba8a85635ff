"""After the upload's transaction commits, nothing may remove what it committed."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.helpers import upload, wait_for_sync

pytestmark = pytest.mark.usefixtures("worker")

# Marking a run published fails like a dropped connection, for datasets named refused_mark*.
REFUSE_MARK = """
CREATE OR REPLACE FUNCTION lakesync_test_refuse_mark() RETURNS trigger AS $$
BEGIN
  IF OLD.published_at IS NULL AND NEW.published_at IS NOT NULL
     AND EXISTS (SELECT 1 FROM datasets WHERE id = NEW.dataset_id AND name LIKE 'refused_mark%') THEN
    RAISE EXCEPTION 'injected: connection lost while marking the run published' USING ERRCODE = '08006';
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER lakesync_test_refuse_mark BEFORE UPDATE ON sync_runs
  FOR EACH ROW EXECUTE FUNCTION lakesync_test_refuse_mark();
"""


@pytest.fixture
def refused_mark(database_url):
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text(REFUSE_MARK))
    yield
    with engine.begin() as conn:
        conn.execute(
            text("DROP TRIGGER lakesync_test_refuse_mark ON sync_runs; DROP FUNCTION lakesync_test_refuse_mark();")
        )
    engine.dispose()


def test_a_failure_after_the_commit_keeps_the_upload_and_its_file(app, client, auth, refused_mark):
    response = upload(client, auth, "id,v\n1,a\n2,b\n", "refused_mark.csv")
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert (Path(app.config["STORAGE_DIR"]) / body["file_name"]).is_file()
    # The chain was sent before the mark failed: the sync goes on as usual.
    status = wait_for_sync(client, auth, body["id"])
    assert status["status"] == "synced", status
    assert status["row_count_bronze"] == 2
    rows = client.get(f"/api/v1/datasets/{body['id']}/rows", headers=auth).get_json()
    assert rows["total"] == 2
