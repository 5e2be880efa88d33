from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExitReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXIT_REASON_UNSPECIFIED: _ClassVar[ExitReason]
    EXIT_REASON_FINISHED: _ClassVar[ExitReason]
    EXIT_REASON_FAILED: _ClassVar[ExitReason]
    EXIT_REASON_LOST: _ClassVar[ExitReason]
    EXIT_REASON_KILLED: _ClassVar[ExitReason]
    EXIT_REASON_ERROR: _ClassVar[ExitReason]
    EXIT_REASON_MEMLIMIT: _ClassVar[ExitReason]
    EXIT_REASON_MISSING: _ClassVar[ExitReason]
    EXIT_REASON_MAXJOBDURATION: _ClassVar[ExitReason]
    EXIT_REASON_PARTITION: _ClassVar[ExitReason]
    EXIT_REASON_TIMELIMIT: _ClassVar[ExitReason]

class OutputStream(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTPUT_STREAM_UNSPECIFIED: _ClassVar[OutputStream]
    OUTPUT_STREAM_STDOUT: _ClassVar[OutputStream]
    OUTPUT_STREAM_STDERR: _ClassVar[OutputStream]
EXIT_REASON_UNSPECIFIED: ExitReason
EXIT_REASON_FINISHED: ExitReason
EXIT_REASON_FAILED: ExitReason
EXIT_REASON_LOST: ExitReason
EXIT_REASON_KILLED: ExitReason
EXIT_REASON_ERROR: ExitReason
EXIT_REASON_MEMLIMIT: ExitReason
EXIT_REASON_MISSING: ExitReason
EXIT_REASON_MAXJOBDURATION: ExitReason
EXIT_REASON_PARTITION: ExitReason
EXIT_REASON_TIMELIMIT: ExitReason
OUTPUT_STREAM_UNSPECIFIED: OutputStream
OUTPUT_STREAM_STDOUT: OutputStream
OUTPUT_STREAM_STDERR: OutputStream

class Accelerator(_message.Message):
    __slots__ = ("count", "kind", "model", "brand", "api")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BRAND_FIELD_NUMBER: _ClassVar[int]
    API_FIELD_NUMBER: _ClassVar[int]
    count: int
    kind: str
    model: str
    brand: str
    api: str
    def __init__(self, count: _Optional[int] = ..., kind: _Optional[str] = ..., model: _Optional[str] = ..., brand: _Optional[str] = ..., api: _Optional[str] = ...) -> None: ...

class SlurmOptions(_message.Message):
    __slots__ = ("partition", "account", "qos", "gres", "extra_args")
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    QOS_FIELD_NUMBER: _ClassVar[int]
    GRES_FIELD_NUMBER: _ClassVar[int]
    EXTRA_ARGS_FIELD_NUMBER: _ClassVar[int]
    partition: str
    account: str
    qos: str
    gres: str
    extra_args: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, partition: _Optional[str] = ..., account: _Optional[str] = ..., qos: _Optional[str] = ..., gres: _Optional[str] = ..., extra_args: _Optional[_Iterable[str]] = ...) -> None: ...

class LsfOptions(_message.Message):
    __slots__ = ("queue", "project", "extra_args")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    EXTRA_ARGS_FIELD_NUMBER: _ClassVar[int]
    queue: str
    project: str
    extra_args: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, queue: _Optional[str] = ..., project: _Optional[str] = ..., extra_args: _Optional[_Iterable[str]] = ...) -> None: ...

class KubernetesOptions(_message.Message):
    __slots__ = ("image", "namespace", "service_account", "node_selector", "labels", "tolerations", "annotations", "scratch_volume_size", "scratch_storage_class", "scratch_mount_path")
    class NodeSelectorEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class AnnotationsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    NODE_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    TOLERATIONS_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    SCRATCH_VOLUME_SIZE_FIELD_NUMBER: _ClassVar[int]
    SCRATCH_STORAGE_CLASS_FIELD_NUMBER: _ClassVar[int]
    SCRATCH_MOUNT_PATH_FIELD_NUMBER: _ClassVar[int]
    image: str
    namespace: str
    service_account: str
    node_selector: _containers.ScalarMap[str, str]
    labels: _containers.ScalarMap[str, str]
    tolerations: _containers.RepeatedCompositeFieldContainer[KubernetesToleration]
    annotations: _containers.ScalarMap[str, str]
    scratch_volume_size: int
    scratch_storage_class: str
    scratch_mount_path: str
    def __init__(self, image: _Optional[str] = ..., namespace: _Optional[str] = ..., service_account: _Optional[str] = ..., node_selector: _Optional[_Mapping[str, str]] = ..., labels: _Optional[_Mapping[str, str]] = ..., tolerations: _Optional[_Iterable[_Union[KubernetesToleration, _Mapping]]] = ..., annotations: _Optional[_Mapping[str, str]] = ..., scratch_volume_size: _Optional[int] = ..., scratch_storage_class: _Optional[str] = ..., scratch_mount_path: _Optional[str] = ...) -> None: ...

class KubernetesToleration(_message.Message):
    __slots__ = ("key", "operator", "value", "effect", "toleration_seconds")
    KEY_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EFFECT_FIELD_NUMBER: _ClassVar[int]
    TOLERATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    key: str
    operator: str
    value: str
    effect: str
    toleration_seconds: int
    def __init__(self, key: _Optional[str] = ..., operator: _Optional[str] = ..., value: _Optional[str] = ..., effect: _Optional[str] = ..., toleration_seconds: _Optional[int] = ...) -> None: ...

class AwsBatchOptions(_message.Message):
    __slots__ = ("job_queue", "job_definition", "image")
    JOB_QUEUE_FIELD_NUMBER: _ClassVar[int]
    JOB_DEFINITION_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    job_queue: str
    job_definition: str
    image: str
    def __init__(self, job_queue: _Optional[str] = ..., job_definition: _Optional[str] = ..., image: _Optional[str] = ...) -> None: ...

class MesosOptions(_message.Message):
    __slots__ = ("role", "attributes")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ROLE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    role: str
    attributes: _containers.ScalarMap[str, str]
    def __init__(self, role: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ...) -> None: ...

class JobSpec(_message.Message):
    __slots__ = ("command", "name", "cores", "memory", "disk", "accelerators", "preemptible", "wall_time_seconds", "environment", "working_directory", "stdout_path", "stderr_path", "job_set", "request_key", "backend", "slurm", "lsf", "kubernetes", "aws_batch", "mesos")
    class EnvironmentEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CORES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    DISK_FIELD_NUMBER: _ClassVar[int]
    ACCELERATORS_FIELD_NUMBER: _ClassVar[int]
    PREEMPTIBLE_FIELD_NUMBER: _ClassVar[int]
    WALL_TIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    WORKING_DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    STDOUT_PATH_FIELD_NUMBER: _ClassVar[int]
    STDERR_PATH_FIELD_NUMBER: _ClassVar[int]
    JOB_SET_FIELD_NUMBER: _ClassVar[int]
    REQUEST_KEY_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    SLURM_FIELD_NUMBER: _ClassVar[int]
    LSF_FIELD_NUMBER: _ClassVar[int]
    KUBERNETES_FIELD_NUMBER: _ClassVar[int]
    AWS_BATCH_FIELD_NUMBER: _ClassVar[int]
    MESOS_FIELD_NUMBER: _ClassVar[int]
    command: str
    name: str
    cores: float
    memory: int
    disk: int
    accelerators: _containers.RepeatedCompositeFieldContainer[Accelerator]
    preemptible: bool
    wall_time_seconds: float
    environment: _containers.ScalarMap[str, str]
    working_directory: str
    stdout_path: str
    stderr_path: str
    job_set: str
    request_key: str
    backend: str
    slurm: SlurmOptions
    lsf: LsfOptions
    kubernetes: KubernetesOptions
    aws_batch: AwsBatchOptions
    mesos: MesosOptions
    def __init__(self, command: _Optional[str] = ..., name: _Optional[str] = ..., cores: _Optional[float] = ..., memory: _Optional[int] = ..., disk: _Optional[int] = ..., accelerators: _Optional[_Iterable[_Union[Accelerator, _Mapping]]] = ..., preemptible: _Optional[bool] = ..., wall_time_seconds: _Optional[float] = ..., environment: _Optional[_Mapping[str, str]] = ..., working_directory: _Optional[str] = ..., stdout_path: _Optional[str] = ..., stderr_path: _Optional[str] = ..., job_set: _Optional[str] = ..., request_key: _Optional[str] = ..., backend: _Optional[str] = ..., slurm: _Optional[_Union[SlurmOptions, _Mapping]] = ..., lsf: _Optional[_Union[LsfOptions, _Mapping]] = ..., kubernetes: _Optional[_Union[KubernetesOptions, _Mapping]] = ..., aws_batch: _Optional[_Union[AwsBatchOptions, _Mapping]] = ..., mesos: _Optional[_Union[MesosOptions, _Mapping]] = ...) -> None: ...

class IssueJobRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: JobSpec
    def __init__(self, spec: _Optional[_Union[JobSpec, _Mapping]] = ...) -> None: ...

class IssueJobResponse(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    def __init__(self, job_id: _Optional[int] = ...) -> None: ...

class IssueJobsRequest(_message.Message):
    __slots__ = ("specs",)
    SPECS_FIELD_NUMBER: _ClassVar[int]
    specs: _containers.RepeatedCompositeFieldContainer[JobSpec]
    def __init__(self, specs: _Optional[_Iterable[_Union[JobSpec, _Mapping]]] = ...) -> None: ...

class IssueJobsResponse(_message.Message):
    __slots__ = ("job_ids",)
    JOB_IDS_FIELD_NUMBER: _ClassVar[int]
    job_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, job_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class KillJobsRequest(_message.Message):
    __slots__ = ("job_ids",)
    JOB_IDS_FIELD_NUMBER: _ClassVar[int]
    job_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, job_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class KillJobsResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListIssuedJobsRequest(_message.Message):
    __slots__ = ("job_set",)
    JOB_SET_FIELD_NUMBER: _ClassVar[int]
    job_set: str
    def __init__(self, job_set: _Optional[str] = ...) -> None: ...

class ListIssuedJobsResponse(_message.Message):
    __slots__ = ("job_ids",)
    JOB_IDS_FIELD_NUMBER: _ClassVar[int]
    job_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, job_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class ListRunningJobsRequest(_message.Message):
    __slots__ = ("job_set",)
    JOB_SET_FIELD_NUMBER: _ClassVar[int]
    job_set: str
    def __init__(self, job_set: _Optional[str] = ...) -> None: ...

class ListRunningJobsResponse(_message.Message):
    __slots__ = ("seconds_running",)
    class SecondsRunningEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: float
        def __init__(self, key: _Optional[int] = ..., value: _Optional[float] = ...) -> None: ...
    SECONDS_RUNNING_FIELD_NUMBER: _ClassVar[int]
    seconds_running: _containers.ScalarMap[int, float]
    def __init__(self, seconds_running: _Optional[_Mapping[int, float]] = ...) -> None: ...

class GetUpdatedJobRequest(_message.Message):
    __slots__ = ("after_sequence", "job_set")
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    JOB_SET_FIELD_NUMBER: _ClassVar[int]
    after_sequence: int
    job_set: str
    def __init__(self, after_sequence: _Optional[int] = ..., job_set: _Optional[str] = ...) -> None: ...

class UpdatedJob(_message.Message):
    __slots__ = ("sequence", "job_id", "exit_reason", "exit_status", "wall_time_seconds", "backing_id", "message", "job_set", "backend")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    EXIT_REASON_FIELD_NUMBER: _ClassVar[int]
    EXIT_STATUS_FIELD_NUMBER: _ClassVar[int]
    WALL_TIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    BACKING_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    JOB_SET_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    job_id: int
    exit_reason: ExitReason
    exit_status: int
    wall_time_seconds: float
    backing_id: str
    message: str
    job_set: str
    backend: str
    def __init__(self, sequence: _Optional[int] = ..., job_id: _Optional[int] = ..., exit_reason: _Optional[_Union[ExitReason, str]] = ..., exit_status: _Optional[int] = ..., wall_time_seconds: _Optional[float] = ..., backing_id: _Optional[str] = ..., message: _Optional[str] = ..., job_set: _Optional[str] = ..., backend: _Optional[str] = ...) -> None: ...

class GetUpdatedJobResponse(_message.Message):
    __slots__ = ("updates",)
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    updates: _containers.RepeatedCompositeFieldContainer[UpdatedJob]
    def __init__(self, updates: _Optional[_Iterable[_Union[UpdatedJob, _Mapping]]] = ...) -> None: ...

class GetSchedulingStatusRequest(_message.Message):
    __slots__ = ("job_set",)
    JOB_SET_FIELD_NUMBER: _ClassVar[int]
    job_set: str
    def __init__(self, job_set: _Optional[str] = ...) -> None: ...

class GetSchedulingStatusResponse(_message.Message):
    __slots__ = ("message", "queued_jobs", "running_jobs", "deadlocked")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    QUEUED_JOBS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_JOBS_FIELD_NUMBER: _ClassVar[int]
    DEADLOCKED_FIELD_NUMBER: _ClassVar[int]
    message: str
    queued_jobs: int
    running_jobs: int
    deadlocked: bool
    def __init__(self, message: _Optional[str] = ..., queued_jobs: _Optional[int] = ..., running_jobs: _Optional[int] = ..., deadlocked: _Optional[bool] = ...) -> None: ...

class SetEnvRequest(_message.Message):
    __slots__ = ("name", "value", "job_set")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    JOB_SET_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    job_set: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ..., job_set: _Optional[str] = ...) -> None: ...

class SetEnvResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetCapabilitiesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AcceleratorCapacity(_message.Message):
    __slots__ = ("accelerator",)
    ACCELERATOR_FIELD_NUMBER: _ClassVar[int]
    accelerator: Accelerator
    def __init__(self, accelerator: _Optional[_Union[Accelerator, _Mapping]] = ...) -> None: ...

class GetCapabilitiesResponse(_message.Message):
    __slots__ = ("backend", "kind", "max_cores", "max_memory", "max_disk", "max_wall_time_seconds", "accelerators", "supports_preemptible", "features", "version", "backends")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MAX_CORES_FIELD_NUMBER: _ClassVar[int]
    MAX_MEMORY_FIELD_NUMBER: _ClassVar[int]
    MAX_DISK_FIELD_NUMBER: _ClassVar[int]
    MAX_WALL_TIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ACCELERATORS_FIELD_NUMBER: _ClassVar[int]
    SUPPORTS_PREEMPTIBLE_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    BACKENDS_FIELD_NUMBER: _ClassVar[int]
    backend: str
    kind: str
    max_cores: float
    max_memory: int
    max_disk: int
    max_wall_time_seconds: float
    accelerators: _containers.RepeatedCompositeFieldContainer[AcceleratorCapacity]
    supports_preemptible: bool
    features: _containers.RepeatedScalarFieldContainer[str]
    version: str
    backends: _containers.RepeatedCompositeFieldContainer[GetCapabilitiesResponse]
    def __init__(self, backend: _Optional[str] = ..., kind: _Optional[str] = ..., max_cores: _Optional[float] = ..., max_memory: _Optional[int] = ..., max_disk: _Optional[int] = ..., max_wall_time_seconds: _Optional[float] = ..., accelerators: _Optional[_Iterable[_Union[AcceleratorCapacity, _Mapping]]] = ..., supports_preemptible: _Optional[bool] = ..., features: _Optional[_Iterable[str]] = ..., version: _Optional[str] = ..., backends: _Optional[_Iterable[_Union[GetCapabilitiesResponse, _Mapping]]] = ...) -> None: ...

class CheckJobRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: JobSpec
    def __init__(self, spec: _Optional[_Union[JobSpec, _Mapping]] = ...) -> None: ...

class Shortfall(_message.Message):
    __slots__ = ("backend", "resource", "requested", "available", "message")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    backend: str
    resource: str
    requested: float
    available: float
    message: str
    def __init__(self, backend: _Optional[str] = ..., resource: _Optional[str] = ..., requested: _Optional[float] = ..., available: _Optional[float] = ..., message: _Optional[str] = ...) -> None: ...

class CheckJobResponse(_message.Message):
    __slots__ = ("accepted", "backend", "refusals", "message")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    REFUSALS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    backend: str
    refusals: _containers.RepeatedCompositeFieldContainer[Shortfall]
    message: str
    def __init__(self, accepted: _Optional[bool] = ..., backend: _Optional[str] = ..., refusals: _Optional[_Iterable[_Union[Shortfall, _Mapping]]] = ..., message: _Optional[str] = ...) -> None: ...

class GetNodeTypesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NodeType(_message.Message):
    __slots__ = ("cores", "memory", "disk", "accelerators", "preemptible", "count", "backend")
    CORES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    DISK_FIELD_NUMBER: _ClassVar[int]
    ACCELERATORS_FIELD_NUMBER: _ClassVar[int]
    PREEMPTIBLE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    cores: float
    memory: int
    disk: int
    accelerators: _containers.RepeatedCompositeFieldContainer[Accelerator]
    preemptible: bool
    count: int
    backend: str
    def __init__(self, cores: _Optional[float] = ..., memory: _Optional[int] = ..., disk: _Optional[int] = ..., accelerators: _Optional[_Iterable[_Union[Accelerator, _Mapping]]] = ..., preemptible: _Optional[bool] = ..., count: _Optional[int] = ..., backend: _Optional[str] = ...) -> None: ...

class GetNodeTypesResponse(_message.Message):
    __slots__ = ("node_types",)
    NODE_TYPES_FIELD_NUMBER: _ClassVar[int]
    node_types: _containers.RepeatedCompositeFieldContainer[NodeType]
    def __init__(self, node_types: _Optional[_Iterable[_Union[NodeType, _Mapping]]] = ...) -> None: ...

class GetNodesRequest(_message.Message):
    __slots__ = ("preemptible",)
    PREEMPTIBLE_FIELD_NUMBER: _ClassVar[int]
    preemptible: bool
    def __init__(self, preemptible: _Optional[bool] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("name", "state", "cores", "cores_used", "memory", "memory_used", "accelerators", "preemptible", "running_jobs", "backend")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CORES_FIELD_NUMBER: _ClassVar[int]
    CORES_USED_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_FIELD_NUMBER: _ClassVar[int]
    ACCELERATORS_FIELD_NUMBER: _ClassVar[int]
    PREEMPTIBLE_FIELD_NUMBER: _ClassVar[int]
    RUNNING_JOBS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: str
    cores: float
    cores_used: float
    memory: int
    memory_used: int
    accelerators: _containers.RepeatedCompositeFieldContainer[Accelerator]
    preemptible: bool
    running_jobs: int
    backend: str
    def __init__(self, name: _Optional[str] = ..., state: _Optional[str] = ..., cores: _Optional[float] = ..., cores_used: _Optional[float] = ..., memory: _Optional[int] = ..., memory_used: _Optional[int] = ..., accelerators: _Optional[_Iterable[_Union[Accelerator, _Mapping]]] = ..., preemptible: _Optional[bool] = ..., running_jobs: _Optional[int] = ..., backend: _Optional[str] = ...) -> None: ...

class GetNodesResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    def __init__(self, nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ...) -> None: ...

class IgnoreNodeRequest(_message.Message):
    __slots__ = ("name", "unignore", "backend")
    NAME_FIELD_NUMBER: _ClassVar[int]
    UNIGNORE_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    name: str
    unignore: bool
    backend: str
    def __init__(self, name: _Optional[str] = ..., unignore: _Optional[bool] = ..., backend: _Optional[str] = ...) -> None: ...

class IgnoreNodeResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetNodeInUseRequest(_message.Message):
    __slots__ = ("name", "backend")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    name: str
    backend: str
    def __init__(self, name: _Optional[str] = ..., backend: _Optional[str] = ...) -> None: ...

class GetNodeInUseResponse(_message.Message):
    __slots__ = ("in_use", "running_jobs")
    IN_USE_FIELD_NUMBER: _ClassVar[int]
    RUNNING_JOBS_FIELD_NUMBER: _ClassVar[int]
    in_use: bool
    running_jobs: int
    def __init__(self, in_use: _Optional[bool] = ..., running_jobs: _Optional[int] = ...) -> None: ...

class GetJobOutputRequest(_message.Message):
    __slots__ = ("job_id", "stream", "tail_bytes", "follow")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    TAIL_BYTES_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    stream: OutputStream
    tail_bytes: int
    follow: bool
    def __init__(self, job_id: _Optional[int] = ..., stream: _Optional[_Union[OutputStream, str]] = ..., tail_bytes: _Optional[int] = ..., follow: _Optional[bool] = ...) -> None: ...

class GetJobOutputResponse(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...
