"""/api/v1/datasets: upload (CSV or NPZ), list, get, delete."""
from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint
from flask import url_for

from ..store import datasets as store
from .auth import auth, current_user
from .schemas import DatasetList, DatasetOut, DatasetsQuery, DatasetUpload
from .state import db, state

bp = APIBlueprint("datasets", __name__, url_prefix="/datasets", tag="Datasets")


@bp.post("")
@bp.auth_required(auth)
@bp.input(DatasetUpload, location="files")
@bp.output(DatasetOut, status_code=201, description="The dataset, checked and stored; use its id as "
                                                     "data.dataset_id in a job spec.")
@bp.doc(summary="Upload a dataset (multipart/form-data)", responses={
    201: "The dataset", 401: "No valid token", 403: "The file does not fit the user's quota (GET /api/v1/me)",
    413: "The body is too large", 422: "Not a usable dataset, or beyond the server's limits on rows, features "
                                      "and values"})
def upload(files_data: DatasetUpload) -> Any:
    file = files_data.file
    settings = state().settings
    dataset = store.create_dataset(db(), current_user(), file.stream, file.filename, settings.artifact_dir,
                                   name=files_data.name or None, target=files_data.target,
                                   limits=settings.dataset_limits, quota_bytes=settings.user_quota_bytes)
    return DatasetOut.model_validate(dataset), 201, {"Location": url_for("datasets.get_dataset", dataset_id=dataset.id)}


@bp.get("")
@bp.auth_required(auth)
@bp.input(DatasetsQuery, location="query")
@bp.output(DatasetList)
@bp.doc(summary="List datasets, newest first", responses=[200, 401, 422])
def list_datasets(query_data: DatasetsQuery) -> Any:
    datasets, token = store.list_datasets(db(), current_user(), query_data.limit, query_data.page_token)
    return DatasetList.model_validate({"items": datasets, "next_page_token": token})


@bp.get("/<int:dataset_id>")
@bp.auth_required(auth)
@bp.output(DatasetOut)
@bp.doc(summary="Get a dataset", responses=[200, 401, 404])
def get_dataset(dataset_id: int) -> Any:
    return DatasetOut.model_validate(store.get_dataset(db(), current_user(), dataset_id))


@bp.delete("/<int:dataset_id>")
@bp.auth_required(auth)
@bp.output({}, status_code=204)
@bp.doc(summary="Delete a dataset and its file", responses=[204, 401, 404, 409])
def delete_dataset(dataset_id: int) -> Any:
    store.delete_dataset(db(), current_user(), dataset_id)
    return "", 204
