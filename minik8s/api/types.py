"""Typed API objects with Kubernetes field names on the wire.

Every model forbids unknown fields, so a typo in a manifest is an error that names the
field instead of a silently dropped setting. Optional fields default to None and are left
out of the wire form (`to_dict`), the way the Kubernetes API server omits them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Quantity = str | int | float


class Model(BaseModel):
    # defer_build: each model's validator is built on its first use, not at import; a CLI process that
    # lists Pods then builds the Pod's, not every kind's (about half of `minik8s get pods`' start-up)
    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


# --- shared --------------------------------------------------------------------------------

class OwnerReference(Model):
    apiVersion: str
    kind: str
    name: str
    uid: str
    controller: bool | None = None
    blockOwnerDeletion: bool | None = None


class ManagedFieldsEntry(Model):
    model_config = ConfigDict(extra="allow")


class ObjectMeta(Model):
    name: str | None = None
    generateName: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resourceVersion: str | None = None
    generation: int | None = None
    creationTimestamp: str | None = None
    deletionTimestamp: str | None = None
    deletionGracePeriodSeconds: int | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    ownerReferences: list[OwnerReference] | None = None
    finalizers: list[str] | None = None
    managedFields: list[ManagedFieldsEntry] | None = None
    selfLink: str | None = None


class ListMeta(Model):
    resourceVersion: str | None = None
    continue_: str | None = Field(default=None, alias="continue")
    remainingItemCount: int | None = None


class Condition(Model):
    """Node, Pod and generic status conditions share one shape."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str | None = None
    message: str | None = None
    lastTransitionTime: str | None = None
    lastProbeTime: str | None = None
    lastHeartbeatTime: str | None = None
    observedGeneration: int | None = None


class TypedObject(Model):
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)

    @property
    def name(self) -> str:
        return self.metadata.name or ""

    @property
    def namespace(self) -> str | None:
        return self.metadata.namespace


# --- Pod -------------------------------------------------------------------------------------

class ObjectFieldSelector(Model):
    fieldPath: str
    apiVersion: str | None = None


class ConfigMapKeySelector(Model):
    key: str
    name: str | None = None
    #: A missing ConfigMap or key leaves the variable unset instead of blocking the container.
    optional: bool | None = None


class SecretKeySelector(Model):
    key: str
    name: str | None = None
    optional: bool | None = None


class ResourceFieldSelector(Model):
    """A container's request or limit as a number of `divisor`s (the downward API's resourceFieldRef)."""

    resource: str
    containerName: str | None = None
    divisor: Quantity | None = None


class EnvVarSource(Model):
    fieldRef: ObjectFieldSelector | None = None
    resourceFieldRef: ResourceFieldSelector | None = None
    configMapKeyRef: ConfigMapKeySelector | None = None
    secretKeyRef: SecretKeySelector | None = None


class EnvVar(Model):
    name: str
    value: str | None = None
    valueFrom: EnvVarSource | None = None


class ConfigMapEnvSource(Model):
    name: str | None = None
    optional: bool | None = None


class SecretEnvSource(Model):
    name: str | None = None
    optional: bool | None = None


class EnvFromSource(Model):
    """Every key of a ConfigMap or Secret as a variable (`prefix` prepended); `env` entries win."""

    prefix: str | None = None
    configMapRef: ConfigMapEnvSource | None = None
    secretRef: SecretEnvSource | None = None


class ContainerPort(Model):
    containerPort: int
    name: str | None = None
    protocol: Literal["TCP", "UDP", "SCTP"] | None = None
    hostPort: int | None = None
    hostIP: str | None = None


class ResourceRequirements(Model):
    requests: dict[str, Quantity] | None = None
    limits: dict[str, Quantity] | None = None


class VolumeMount(Model):
    name: str
    mountPath: str
    readOnly: bool | None = None
    subPath: str | None = None


class ExecAction(Model):
    command: list[str] | None = None


class HTTPHeader(Model):
    name: str
    value: str


class HTTPGetAction(Model):
    port: int | str
    path: str | None = None
    host: str | None = None
    scheme: Literal["HTTP", "HTTPS"] | None = None
    httpHeaders: list[HTTPHeader] | None = None


class TCPSocketAction(Model):
    port: int | str
    host: str | None = None


class Probe(Model):
    exec: ExecAction | None = None
    httpGet: HTTPGetAction | None = None
    tcpSocket: TCPSocketAction | None = None
    initialDelaySeconds: int | None = None
    periodSeconds: int | None = None
    timeoutSeconds: int | None = None
    successThreshold: int | None = None
    failureThreshold: int | None = None
    terminationGracePeriodSeconds: int | None = None


class SleepAction(Model):
    seconds: int


class LifecycleHandler(Model):
    exec: ExecAction | None = None
    httpGet: HTTPGetAction | None = None
    #: Kept on the wire as Kubernetes does (for old manifests); validation refuses it, since nothing runs it.
    tcpSocket: TCPSocketAction | None = None
    sleep: SleepAction | None = None


class Lifecycle(Model):
    postStart: LifecycleHandler | None = None
    preStop: LifecycleHandler | None = None


class Capabilities(Model):
    add: list[str] | None = None
    drop: list[str] | None = None


class SeccompProfile(Model):
    type: Literal["RuntimeDefault", "Unconfined", "Localhost"]
    localhostProfile: str | None = None


class SecurityContext(Model):
    privileged: bool | None = None
    runAsUser: int | None = None
    runAsGroup: int | None = None
    runAsNonRoot: bool | None = None
    readOnlyRootFilesystem: bool | None = None
    allowPrivilegeEscalation: bool | None = None
    capabilities: Capabilities | None = None
    seccompProfile: SeccompProfile | None = None


class Container(Model):
    name: str
    image: str | None = None
    command: list[str] | None = None
    args: list[str] | None = None
    env: list[EnvVar] | None = None
    envFrom: list[EnvFromSource] | None = None
    workingDir: str | None = None
    ports: list[ContainerPort] | None = None
    resources: ResourceRequirements | None = None
    volumeMounts: list[VolumeMount] | None = None
    imagePullPolicy: Literal["Always", "IfNotPresent", "Never"] | None = None
    readinessProbe: Probe | None = None
    livenessProbe: Probe | None = None
    startupProbe: Probe | None = None
    securityContext: SecurityContext | None = None
    stdin: bool | None = None
    tty: bool | None = None
    terminationMessagePath: str | None = None
    terminationMessagePolicy: str | None = None
    lifecycle: Lifecycle | None = None
    #: Only on init containers, only "Always": a native sidecar (validation refuses it elsewhere).
    restartPolicy: Literal["Always"] | None = None


class EmptyDirVolumeSource(Model):
    medium: Literal["", "Memory"] | None = None
    sizeLimit: Quantity | None = None


class HostPathVolumeSource(Model):
    path: str
    type: str | None = None


class KeyToPath(Model):
    key: str
    path: str
    mode: int | None = None


class ConfigMapVolumeSource(Model):
    name: str | None = None
    items: list[KeyToPath] | None = None
    defaultMode: int | None = None
    optional: bool | None = None


class SecretVolumeSource(Model):
    secretName: str | None = None
    items: list[KeyToPath] | None = None
    defaultMode: int | None = None
    optional: bool | None = None


class ServiceAccountTokenProjection(Model):
    path: str
    #: None: the API server's default audience (`minik8s`).
    audience: str | None = None
    expirationSeconds: int | None = None


class ConfigMapProjection(Model):
    name: str | None = None
    items: list[KeyToPath] | None = None
    optional: bool | None = None


class SecretProjection(Model):
    name: str | None = None
    items: list[KeyToPath] | None = None
    optional: bool | None = None


class DownwardAPIVolumeFile(Model):
    path: str
    fieldRef: ObjectFieldSelector | None = None
    resourceFieldRef: ResourceFieldSelector | None = None
    mode: int | None = None


class DownwardAPIVolumeSource(Model):
    items: list[DownwardAPIVolumeFile] | None = None
    defaultMode: int | None = None


class DownwardAPIProjection(Model):
    items: list[DownwardAPIVolumeFile] | None = None


class VolumeProjection(Model):
    secret: SecretProjection | None = None
    configMap: ConfigMapProjection | None = None
    downwardAPI: DownwardAPIProjection | None = None
    serviceAccountToken: ServiceAccountTokenProjection | None = None


class ProjectedVolumeSource(Model):
    sources: list[VolumeProjection] | None = None
    defaultMode: int | None = None


class Volume(Model):
    name: str
    emptyDir: EmptyDirVolumeSource | None = None
    hostPath: HostPathVolumeSource | None = None
    configMap: ConfigMapVolumeSource | None = None
    secret: SecretVolumeSource | None = None
    projected: ProjectedVolumeSource | None = None
    downwardAPI: DownwardAPIVolumeSource | None = None


class Toleration(Model):
    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    tolerationSeconds: int | None = None


class PodSecurityContext(Model):
    runAsUser: int | None = None
    runAsGroup: int | None = None
    runAsNonRoot: bool | None = None
    fsGroup: int | None = None
    seccompProfile: SeccompProfile | None = None


class NodeSelectorRequirement(Model):
    """Operators: In, NotIn, Exists, DoesNotExist, Gt, Lt (checked in validation.py)."""

    key: str
    operator: str
    values: list[str] | None = None


class NodeSelectorTerm(Model):
    """Expressions and fields are ANDed; an empty term matches no node."""

    matchExpressions: list[NodeSelectorRequirement] | None = None
    matchFields: list[NodeSelectorRequirement] | None = None


class NodeSelector(Model):
    """Terms are ORed."""

    nodeSelectorTerms: list[NodeSelectorTerm]


class PreferredSchedulingTerm(Model):
    weight: int
    preference: NodeSelectorTerm


class NodeAffinity(Model):
    requiredDuringSchedulingIgnoredDuringExecution: NodeSelector | None = None
    preferredDuringSchedulingIgnoredDuringExecution: list[PreferredSchedulingTerm] | None = None


class LabelSelectorRequirement(Model):
    """Operators: In, NotIn, Exists, DoesNotExist (checked in validation.py)."""

    key: str
    operator: str
    values: list[str] | None = None


class LabelSelector(Model):
    matchLabels: dict[str, str] | None = None
    matchExpressions: list[LabelSelectorRequirement] | None = None


class PodAffinityTerm(Model):
    labelSelector: LabelSelector | None = None
    namespaces: list[str] | None = None
    namespaceSelector: LabelSelector | None = None
    topologyKey: str


class WeightedPodAffinityTerm(Model):
    weight: int
    podAffinityTerm: PodAffinityTerm


class PodAffinity(Model):
    requiredDuringSchedulingIgnoredDuringExecution: list[PodAffinityTerm] | None = None
    preferredDuringSchedulingIgnoredDuringExecution: list[WeightedPodAffinityTerm] | None = None


class PodAntiAffinity(Model):
    requiredDuringSchedulingIgnoredDuringExecution: list[PodAffinityTerm] | None = None
    preferredDuringSchedulingIgnoredDuringExecution: list[WeightedPodAffinityTerm] | None = None


class Affinity(Model):
    nodeAffinity: NodeAffinity | None = None
    podAffinity: PodAffinity | None = None
    podAntiAffinity: PodAntiAffinity | None = None


class TopologySpreadConstraint(Model):
    """How evenly matching pods spread across the domains of `topologyKey` (kube-scheduler's PodTopologySpread)."""

    maxSkew: int
    topologyKey: str
    whenUnsatisfiable: Literal["DoNotSchedule", "ScheduleAnyway"]
    labelSelector: LabelSelector | None = None
    minDomains: int | None = None
    nodeAffinityPolicy: Literal["Honor", "Ignore"] | None = None
    nodeTaintsPolicy: Literal["Honor", "Ignore"] | None = None
    matchLabelKeys: list[str] | None = None


class PodDNSConfigOption(Model):
    name: str | None = None
    value: str | None = None


class PodDNSConfig(Model):
    """Merged into the resolv.conf the pod's dnsPolicy gives it (the only source with dnsPolicy None)."""

    nameservers: list[str] | None = None
    searches: list[str] | None = None
    options: list[PodDNSConfigOption] | None = None


class HostAlias(Model):
    """Extra lines of the pod's /etc/hosts."""

    ip: str
    hostnames: list[str] | None = None


class PodSpec(Model):
    containers: list[Container]
    initContainers: list[Container] | None = None
    volumes: list[Volume] | None = None
    restartPolicy: Literal["Always", "OnFailure", "Never"] | None = None
    terminationGracePeriodSeconds: int | None = None
    nodeName: str | None = None
    nodeSelector: dict[str, str] | None = None
    affinity: Affinity | None = None
    tolerations: list[Toleration] | None = None
    schedulerName: str | None = None
    hostname: str | None = None
    subdomain: str | None = None
    hostNetwork: bool | None = None
    dnsPolicy: str | None = None
    securityContext: PodSecurityContext | None = None
    serviceAccountName: str | None = None
    #: Deprecated alias of serviceAccountName, kept equal to it by the API server.
    serviceAccount: str | None = None
    #: False: no ServiceAccount token volume is added at admission (the ServiceAccount's own field otherwise).
    automountServiceAccountToken: bool | None = None
    priority: int | None = None
    #: Resolved to `priority` (and `preemptionPolicy`) at admission from the PriorityClass of that name.
    priorityClassName: str | None = None
    preemptionPolicy: Literal["PreemptLowerPriority", "Never"] | None = None
    topologySpreadConstraints: list[TopologySpreadConstraint] | None = None
    enableServiceLinks: bool | None = None
    dnsConfig: PodDNSConfig | None = None
    hostAliases: list[HostAlias] | None = None


class ContainerStateWaiting(Model):
    reason: str | None = None
    message: str | None = None


class ContainerStateRunning(Model):
    startedAt: str | None = None


class ContainerStateTerminated(Model):
    exitCode: int
    reason: str | None = None
    message: str | None = None
    startedAt: str | None = None
    finishedAt: str | None = None
    containerID: str | None = None
    signal: int | None = None


class ContainerState(Model):
    waiting: ContainerStateWaiting | None = None
    running: ContainerStateRunning | None = None
    terminated: ContainerStateTerminated | None = None


class ContainerStatus(Model):
    name: str
    ready: bool
    restartCount: int
    image: str
    imageID: str | None = None
    containerID: str | None = None
    started: bool | None = None
    state: ContainerState | None = None
    lastState: ContainerState | None = None


class PodIP(Model):
    ip: str


class PodStatus(Model):
    phase: Literal["Pending", "Running", "Succeeded", "Failed", "Unknown"] | None = None
    conditions: list[Condition] | None = None
    message: str | None = None
    reason: str | None = None
    hostIP: str | None = None
    podIP: str | None = None
    podIPs: list[PodIP] | None = None
    startTime: str | None = None
    containerStatuses: list[ContainerStatus] | None = None
    initContainerStatuses: list[ContainerStatus] | None = None
    qosClass: str | None = None
    #: Set by the scheduler on a pod that preempted others: the node it waits for.
    nominatedNodeName: str | None = None


class Pod(TypedObject):
    spec: PodSpec
    status: PodStatus | None = None


# --- Node, Namespace, Event, Lease, Binding -------------------------------------------------

class Taint(Model):
    key: str
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]
    timeAdded: str | None = None


class NodeSpec(Model):
    podCIDR: str | None = None
    podCIDRs: list[str] | None = None
    unschedulable: bool | None = None
    taints: list[Taint] | None = None
    providerID: str | None = None


class NodeAddress(Model):
    type: str
    address: str


class DaemonEndpoint(Model):
    Port: int


class NodeDaemonEndpoints(Model):
    kubeletEndpoint: DaemonEndpoint | None = None


class NodeSystemInfo(Model):
    machineID: str = ""
    systemUUID: str = ""
    bootID: str = ""
    kernelVersion: str = ""
    osImage: str = ""
    containerRuntimeVersion: str = ""
    kubeletVersion: str = ""
    kubeProxyVersion: str = ""
    operatingSystem: str = ""
    architecture: str = ""


class NodeStatus(Model):
    capacity: dict[str, Quantity] | None = None
    allocatable: dict[str, Quantity] | None = None
    conditions: list[Condition] | None = None
    addresses: list[NodeAddress] | None = None
    daemonEndpoints: NodeDaemonEndpoints | None = None
    nodeInfo: NodeSystemInfo | None = None
    phase: str | None = None


class Node(TypedObject):
    spec: NodeSpec = Field(default_factory=NodeSpec)
    status: NodeStatus | None = None


class NamespaceSpec(Model):
    finalizers: list[str] | None = None


class NamespaceStatus(Model):
    phase: str | None = None


class Namespace(TypedObject):
    spec: NamespaceSpec | None = None
    status: NamespaceStatus | None = None


class ObjectReference(Model):
    kind: str | None = None
    namespace: str | None = None
    name: str | None = None
    uid: str | None = None
    apiVersion: str | None = None
    resourceVersion: str | None = None
    fieldPath: str | None = None


class EventSource(Model):
    component: str | None = None
    host: str | None = None


class Event(TypedObject):
    involvedObject: ObjectReference
    reason: str | None = None
    message: str | None = None
    type: str | None = None
    count: int | None = None
    firstTimestamp: str | None = None
    lastTimestamp: str | None = None
    eventTime: str | None = None
    source: EventSource | None = None
    reportingComponent: str | None = None
    reportingInstance: str | None = None
    action: str | None = None


class LeaseSpec(Model):
    holderIdentity: str | None = None
    leaseDurationSeconds: int | None = None
    acquireTime: str | None = None
    renewTime: str | None = None
    leaseTransitions: int | None = None


class Lease(TypedObject):
    spec: LeaseSpec = Field(default_factory=LeaseSpec)


class Binding(TypedObject):
    target: ObjectReference
