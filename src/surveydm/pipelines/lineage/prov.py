"""W3C PROV (PROV-DM, serialised as PROV-JSON) of a lineage graph, with the ``prov`` package.

Mapping (W3C PROV-DM sections 2.1-2.2): every product is an ``entity`` (type, data ID, archive
path, quality, validity, calibration validity range); every job that made one is an
``activity`` (task, start and end times) that ``used`` its inputs (with their role as
``prov:role``) and generated its products (``wasGeneratedBy``); each product
``wasDerivedFrom`` its inputs; the pilot that ran the job is an ``agent`` associated with it
under the job's production as ``plan`` (an entity carrying code version, configuration hash and
release).
"""

from __future__ import annotations

import json
from typing import Any

from prov.model import PROV_ROLE, PROV_TYPE, ProvDocument

from surveydm.db.lineage import ProductNode
from surveydm.pipelines.lineage.graph import LineageGraph

#: Namespace of surveydm identifiers in PROV documents.
NAMESPACE = "https://surveydm.org/ns#"


def prov_document(graph: LineageGraph) -> ProvDocument:
    """The PROV document of ``graph`` (see the module docstring for the mapping)."""
    doc = ProvDocument()
    doc.add_namespace("sdm", NAMESPACE)
    for node in graph.nodes.values():
        doc.entity(_entity_id(node), _entity_attributes(node))
        if node.job is not None:
            _add_activity(doc, node)
    for e in graph.edges:
        made, used = graph.nodes[e.product_id], graph.nodes[e.input_id]
        doc.wasDerivedFrom(_entity_id(made), _entity_id(used))
        if made.job is not None:
            doc.used(
                f"sdm:job/{made.job.id}", _entity_id(used), other_attributes={PROV_ROLE: e.role}
            )
    if graph.detection is not None:
        d = graph.detection
        det = f"sdm:detection/{d.id}"
        doc.entity(det, {PROV_TYPE: "sdm:detection", "sdm:ra": d.ra, "sdm:dec": d.dec,
                         "sdm:band": d.band})  # fmt: skip
        doc.wasDerivedFrom(det, _entity_id(graph.nodes[graph.root]))
    return doc


def prov_json(graph: LineageGraph) -> dict[str, Any]:
    """The PROV-JSON document of ``graph`` as a dict (W3C member submission "PROV-JSON")."""
    return json.loads(prov_document(graph).serialize(format="json"))


def _entity_id(node: ProductNode) -> str:
    return f"sdm:product/{node.uuid}"


def _entity_attributes(node: ProductNode) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        PROV_TYPE: f"sdm:{node.product_type}",
        "sdm:product_id": node.id,
        "sdm:data_id": json.dumps(node.data_id, sort_keys=True),
        "sdm:quality": node.quality,
        "sdm:validity": node.validity,
        "sdm:created": node.created.isoformat(),
    }
    if node.path:
        attrs["sdm:path"] = node.path
    if node.calibration is not None:
        attrs["sdm:valid_from"] = node.calibration.valid_from.isoformat()
        attrs["sdm:valid_until"] = node.calibration.valid_until.isoformat()
    return attrs


def _add_activity(doc: ProvDocument, node: ProductNode) -> None:
    job = node.job
    assert job is not None
    act = f"sdm:job/{job.id}"
    if doc.get_record(act):
        doc.wasGeneratedBy(_entity_id(node), act)
        return
    doc.activity(act, job.started, job.ended, {PROV_TYPE: f"sdm:{job.task}", "sdm:name": job.name,
                                               "sdm:status": job.status})  # fmt: skip
    doc.wasGeneratedBy(_entity_id(node), act)
    plan = None
    if node.production is not None:
        p = node.production
        plan = f"sdm:production/{p.id}"
        if not doc.get_record(plan):
            doc.entity(plan, {PROV_TYPE: "prov:Plan", "sdm:pipeline": p.pipeline,
                              "sdm:release": p.release, "sdm:software_version": p.software_version,
                              "sdm:config_hash": p.config_hash})  # fmt: skip
    if job.worker:
        agent = f"sdm:worker/{job.worker}"
        if not doc.get_record(agent):
            doc.agent(agent, {PROV_TYPE: "prov:SoftwareAgent", "sdm:host": job.host or ""})
        doc.wasAssociatedWith(act, agent, plan)
