"""The Kubernetes backend: each job is a batch/v1 Job, created and watched through the official
`kubernetes` client.

    batchgate serve k8s --k8s-image python:3.12-slim [--k8s-kubeconfig PATH --k8s-context NAME] ...

Credentials are the client's own: the kubeconfig given (or $KUBECONFIG, ~/.kube/config), or,
inside a pod, the service account's (--k8s-in-cluster, the default when no kubeconfig is found
and $KUBERNETES_SERVICE_HOST is set).
"""

from __future__ import annotations

import argparse
import os

from kubernetes import client, config

from batchgate import units
from batchgate.config import add_flag, add_option
from batchgate.registry import ServiceDefinition

from .driver import KubernetesDriver
from .manifest import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("kubernetes backend (a job's KubernetesOptions override these)")
    add_option(group, "--k8s-kubeconfig", default="", help="kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)")
    add_option(group, "--k8s-context", default="", help="kubeconfig context (default: its current context)")
    add_flag(group, "--k8s-in-cluster", help="use the pod's service account instead of a kubeconfig")
    add_option(group, "--k8s-namespace", default="", help="namespace of the jobs (default: the context's, else 'default')")
    add_option(group, "--k8s-image", default="", help="image of jobs that name none (KubernetesOptions.image)")
    add_option(group, "--k8s-service-account", default="", help="service account the jobs' pods run as")
    add_option(group, "--k8s-run-as-user", default=1000, type=int, help="uid the jobs' containers run as; 0 allows root")
    add_option(
        group,
        "--k8s-ttl-after-finished",
        default=3600,
        type=int,
        help="seconds a finished Job stays (ttlSecondsAfterFinished), so a restarted service can still read it",
    )
    add_option(group, "--k8s-kill-grace", default=10, type=int, help="seconds a killed job has to stop after SIGTERM")
    add_option(
        group,
        "--k8s-start-timeout",
        default=300.0,
        type=units.parse_duration,
        help="how long a container may fail to start (image pull, bad config) before its job ends in ERROR",
    )
    add_option(
        group,
        "--k8s-api-timeout",
        default=300.0,
        type=units.parse_duration,
        help="how long the API server may fail to answer a job's create before the job ends in ERROR",
    )
    add_option(group, "--k8s-scratch-size", default=0, type=units.parse_bytes, help="a scratch volume of this size for every job (0: none)")
    add_option(group, "--k8s-scratch-storage-class", default="", help="storage class of scratch volumes (default: the cluster's)")
    add_option(group, "--k8s-gpu-model-label", default="nvidia.com/gpu.product", help="node label that names a node's GPU model")


def build_driver(args: argparse.Namespace) -> KubernetesDriver:
    configuration = client.Configuration()
    namespace = args.k8s_namespace
    in_cluster = args.k8s_in_cluster or (not args.k8s_kubeconfig and "KUBERNETES_SERVICE_HOST" in os.environ and not os.environ.get("KUBECONFIG"))
    try:
        if in_cluster:
            config.load_incluster_config(client_configuration=configuration)
            if not namespace:
                with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as found:
                    namespace = found.read().strip()
        else:
            config.load_kube_config(config_file=args.k8s_kubeconfig or None, context=args.k8s_context or None, client_configuration=configuration)
            if not namespace:
                _, current = config.list_kube_config_contexts(config_file=args.k8s_kubeconfig or None)
                chosen = current
                if args.k8s_context:
                    contexts, _ = config.list_kube_config_contexts(config_file=args.k8s_kubeconfig or None)
                    chosen = next(c for c in contexts if c["name"] == args.k8s_context)
                namespace = chosen["context"].get("namespace", "")
    except (config.ConfigException, OSError, StopIteration) as error:
        raise SystemExit(f"batchgate: no Kubernetes credentials: {error}") from None
    settings = Settings(
        namespace=namespace or "default",
        image=args.k8s_image,
        service_account=args.k8s_service_account,
        run_as_user=args.k8s_run_as_user,
        ttl_after_finished=args.k8s_ttl_after_finished,
        kill_grace=args.k8s_kill_grace,
        gpu_model_label=args.k8s_gpu_model_label,
        scratch_volume_size=args.k8s_scratch_size,
        scratch_storage_class=args.k8s_scratch_storage_class,
    )
    return KubernetesDriver(client.ApiClient(configuration), settings, start_timeout=args.k8s_start_timeout, api_timeout=args.k8s_api_timeout)


SERVICE = ServiceDefinition(
    name="k8s",
    default_port=50064,
    description="Run jobs on a Kubernetes cluster as batch/v1 Jobs, through the official client.",
    add_arguments=add_arguments,
    build_driver=build_driver,
)
