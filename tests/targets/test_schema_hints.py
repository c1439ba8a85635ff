"""Schema hints on the Databricks target (through the emulator) and in the plan sent to MCP."""

from __future__ import annotations

import decimal
import json

import pyarrow as pa

from service.lakehouse.mcp import plan_from_json, plan_json
from service.transform.plan import SilverColumn, SilverPlan
from tests.helpers import upload, wait_for_sync

HINTED = (
    "Order ID,Amount,Day,Paid\n1,10.50,2024-01-05,true\n2,n/a?,2024-02-30,yes\n3,7,2024-03-01,false\n"
    "4,1.239,2024-03-02,true\n"
)
HINTS = {"amount": "decimal(10,2)", "Day": "date", "paid": "boolean"}


def test_hints_on_databricks_use_try_cast_and_rescue_the_raw_text(databricks, auth):
    emulator = databricks.extras["emulator"]
    client = databricks.app.test_client()
    response = upload(client, auth, HINTED, "orders.csv", schema_hints=json.dumps(HINTS))
    assert response.status_code == 201, response.get_json()
    status = wait_for_sync(client, auth, response.get_json()["id"], timeout=90)
    assert status["status"] == "synced", status
    assert status["values_rescued"] == 4
    silver = emulator.read_table(status["silver_table"])
    assert pa.types.is_decimal(silver.schema.field("amount").type)
    rows = {r["order_id"]: r for r in silver.to_pylist()}
    assert rows[1]["amount"] == decimal.Decimal("10.50") and rows[1]["_rescued_data"] is None
    assert rows[2]["amount"] is None and rows[2]["day"] is None and rows[2]["paid"] is None
    assert json.loads(rows[2]["_rescued_data"]) == {"amount": "n/a?", "day": "2024-02-30", "paid": "yes"}
    assert rows[3]["paid"] is False
    # A value the decimal would round is rescued, not rounded.
    assert rows[4]["amount"] is None and json.loads(rows[4]["_rescued_data"]) == {"amount": "1.239"}


def test_the_plan_sent_to_mcp_carries_the_hinted_types():
    plan = SilverPlan(
        columns=[
            SilverColumn("Amount", "amount", "decimal(10,2)", "string", hinted=True),
            SilverColumn("id", "id", "integer", "string"),
        ],
        null_tokens=[""],
    )
    sent = plan_json(plan)
    assert sent["columns"][0] == {
        "source_name": "Amount",
        "name": "amount",
        "type": "decimal(10,2)",
        "source_type": "string",
        "hinted": True,
    }
    assert plan_from_json(json.loads(json.dumps(sent))) == plan
