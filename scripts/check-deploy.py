#!/usr/bin/env python3
"""Checks the deployment files under deploy/ against each other and against the binary.

    scripts/check-deploy.py [PATH-TO-auth-server]     (default: target/debug/auth-server)

1. Every *.yaml / *.yml under deploy/ parses (all documents of a multi-document file).
2. Kubernetes documents have apiVersion, kind and metadata.name (and no namespace);
   kustomization.yaml lists files that exist, and every manifest but the examples, and
   builds (when kustomize or kubectl is installed); Deployment containers have liveness and
   readiness probes and resource requests.
3. Every environment variable set for the auth-server container (compose `environment`,
   Kubernetes `env`, the keys of ConfigMaps and Secrets it reads through envFrom, the
   Dockerfile's ENV) is one the binary reads, as listed by `auth-server serve --help`; none
   is set to an empty string (the binary reads an empty value as unset; leaving the
   setting out says so plainly).
4. Probe paths and the Prometheus path annotation are service endpoints of the API contract;
   the container port, the probe ports, the Service's targetPort, the scrape port, nginx's
   upstream and the Dockerfile's EXPOSE all equal the PORT the container is given.
5. The subcommands the manifests run (`serve`, `migrate`) are listed by `auth-server --help`.
6. The Dockerfile's HEALTHCHECK runs the binary's `healthcheck` with arguments it accepts: with
   nothing listening it exits 1 (unhealthy), not 2 (a usage error).
7. The files the image's build runs (the scripts its RUN steps name, and the scripts and
   bench/ files those name in turn) exist and are in the build context: not left out by
   .dockerignore.

Needs Python 3.11 and PyYAML (installed with pip if missing). Prints one line per check and
exits with status 1 if any check fails.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import yaml
except ImportError:
    if os.environ.get("CHECK_DEPLOY_PYYAML_INSTALLED"):
        sys.exit("check-deploy: PyYAML was installed but still cannot be imported")
    print("check-deploy: installing PyYAML", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "pyyaml"], check=True)
    # Start again, so that a site-packages directory pip has just created is on sys.path.
    os.environ["CHECK_DEPLOY_PYYAML_INSTALLED"] = "1"
    os.execv(sys.executable, [sys.executable, *sys.argv])

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILE = DEPLOY / "Dockerfile"
NGINX_CONF = DEPLOY / "nginx.conf"
DEFAULT_BINARY = ROOT / "target" / "debug" / "auth-server"

# GET endpoints of "Service endpoints" in the API contract that a probe or scraper may use.
CONTRACT_PATHS = {"/health/live", "/health/ready", "/health", "/metrics"}
DEFAULT_PORT = 8000
IMAGE_NAME = "auth-server"
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}


class Report:
    """Collects one line per check and whether any failed."""

    def __init__(self) -> None:
        self.failed = 0

    def ok(self, check: str, detail: str = "") -> None:
        print(f"ok    {check}" + (f": {detail}" if detail else ""))

    def fail(self, check: str, detail: str) -> None:
        self.failed += 1
        print(f"FAIL  {check}: {detail}")

    def skip(self, check: str, detail: str) -> None:
        print(f"skip  {check}: {detail}")

    def expect(self, cond: bool, check: str, good: str, bad: str) -> None:
        if cond:
            self.ok(check, good)
        else:
            self.fail(check, bad)


def rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------------------
# The binary


@dataclass
class BinaryInfo:
    env_names: set[str]
    subcommands: set[str]
    value_flags: set[str]  # flags that take a value (`--port <PORT>`)


def run_help(binary: Path, *args: str) -> str:
    # A clean environment: the help text shows current values of non-secret settings, and an
    # unparsable value in the caller's environment must not change the outcome.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C"}
    out = subprocess.run(
        [str(binary), *args, "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=True,
    )
    return out.stdout


def read_binary(binary: Path, report: Report) -> BinaryInfo | None:
    if not binary.is_file() or not os.access(binary, os.X_OK):
        report.fail(
            "binary",
            f"{binary} is not an executable file (build it: cargo build -p auth-server)",
        )
        return None
    try:
        top = run_help(binary)
        serve = run_help(binary, "serve")
    except (subprocess.SubprocessError, OSError) as err:
        report.fail("binary", f"{binary} --help failed: {err}")
        return None

    env_names = set(re.findall(r"\[env: ([A-Za-z_][A-Za-z0-9_]*)[=\]]", serve))
    value_flags = set(re.findall(r"^\s+(?:-\w, )?(--[a-z0-9-]+)[ =]<", serve, re.M))

    subcommands: set[str] = set()
    in_commands = False
    for line in top.splitlines():
        if line.strip() == "Commands:":
            in_commands = True
            continue
        if in_commands:
            m = re.match(r"^\s{2}([a-z][a-z0-9-]*)\b", line)
            if m:
                subcommands.add(m.group(1))
            elif not line.strip() or not line.startswith(" "):
                break

    if not env_names:
        report.fail("binary", f"`{binary} serve --help` lists no [env: NAME] entries")
        return None
    if not subcommands:
        report.fail("binary", f"`{binary} --help` lists no subcommands")
        return None
    report.ok(
        "binary",
        f"{rel(binary)}: {len(env_names)} environment variables, "
        f"subcommands {', '.join(sorted(subcommands))}",
    )
    return BinaryInfo(env_names, subcommands, value_flags)


# ---------------------------------------------------------------------------------------
# YAML


@dataclass
class Doc:
    path: Path
    index: int
    body: Any

    @property
    def where(self) -> str:
        return f"{rel(self.path)}#{self.index}"


def load_yaml(report: Report) -> list[Doc]:
    files = sorted(
        p for p in DEPLOY.rglob("*") if p.is_file() and p.suffix in (".yaml", ".yml")
    )
    docs: list[Doc] = []
    if not files:
        report.fail("yaml", f"no *.yaml or *.yml under {rel(DEPLOY)}")
    for path in files:
        try:
            with path.open(encoding="utf-8") as f:
                bodies = list(yaml.safe_load_all(f))
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            report.fail(f"yaml {rel(path)}", " ".join(str(err).split()))
            continue
        bodies = [b for b in bodies if b is not None]
        report.ok(f"yaml {rel(path)}", f"{len(bodies)} document(s)")
        docs.extend(Doc(path, i, b) for i, b in enumerate(bodies))
    return docs


def is_k8s(doc: Doc) -> bool:
    return isinstance(doc.body, dict) and (
        K8S in doc.path.parents or "apiVersion" in doc.body or "kind" in doc.body
    )


def is_compose(doc: Doc) -> bool:
    return (
        isinstance(doc.body, dict)
        and isinstance(doc.body.get("services"), dict)
        and "apiVersion" not in doc.body
    )


def name_of(doc: Doc) -> str:
    meta = doc.body.get("metadata") or {}
    return meta.get("name", "?") if isinstance(meta, dict) else "?"


# ---------------------------------------------------------------------------------------
# Kubernetes structure


def check_k8s_shape(docs: list[Doc], report: Report) -> None:
    for doc in filter(is_k8s, docs):
        body = doc.body
        kind = body.get("kind")
        missing = [k for k in ("apiVersion", "kind") if not body.get(k)]
        if kind != "Kustomization":
            meta = body.get("metadata")
            if not isinstance(meta, dict) or not meta.get("name"):
                missing.append("metadata.name")
            if isinstance(meta, dict) and "namespace" in meta:
                report.fail(
                    f"k8s {doc.where}",
                    "sets metadata.namespace; the manifests are namespace-agnostic",
                )
        if kind == "Kustomization":
            label, good = f"k8s {doc.where} Kustomization", "apiVersion, kind"
        else:
            label, good = f"k8s {doc.where} {kind or '?'}/{name_of(doc)}", "apiVersion, kind, name"
        report.expect(not missing, label, good, f"missing {', '.join(missing)}")
        if kind == "Kustomization":
            check_kustomization(doc, report)
        if kind == "Deployment":
            check_deployment(doc, report)


def check_kustomization(doc: Doc, report: Report) -> None:
    base = doc.path.parent
    listed = [r for r in doc.body.get("resources") or [] if isinstance(r, str)]
    absent = [r for r in listed if not (base / r).exists()]
    report.expect(
        not absent,
        f"kustomization {rel(doc.path)} resources exist",
        f"{len(listed)} listed",
        f"missing: {', '.join(absent)}",
    )
    manifests = {
        p.name
        for p in base.iterdir()
        if p.suffix in (".yaml", ".yml")
        and p.name not in ("kustomization.yaml", "kustomization.yml")
        and ".example." not in p.name
    }
    unlisted = sorted(manifests - set(listed))
    report.expect(
        not unlisted,
        f"kustomization {rel(doc.path)} lists every manifest",
        "examples left out",
        f"not listed: {', '.join(unlisted)}",
    )
    examples = sorted(r for r in listed if ".example." in r)
    if examples:
        report.fail(f"kustomization {rel(doc.path)}", f"lists example files: {', '.join(examples)}")
    kubectl = shutil.which("kustomize") or shutil.which("kubectl")
    if kubectl is None:
        report.skip(f"kustomize build {rel(base)}", "neither kustomize nor kubectl on PATH")
        return
    cmd = [kubectl, "build", str(base)] if kubectl.endswith("kustomize") else [
        kubectl, "kustomize", str(base)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (subprocess.SubprocessError, OSError) as err:
        report.fail(f"kustomize build {rel(base)}", str(err))
        return
    report.expect(
        out.returncode == 0,
        f"kustomize build {rel(base)}",
        f"{len([d for d in yaml.safe_load_all(out.stdout) if d])} objects"
        if out.returncode == 0 else "",
        " ".join(out.stderr.split())[:400],
    )


def pod_spec(body: dict) -> dict | None:
    kind = body.get("kind")
    spec = body.get("spec") or {}
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    return ((spec.get("template") or {}).get("spec")) or None


def pod_annotations(body: dict) -> dict:
    kind = body.get("kind")
    if kind == "Pod":
        return (body.get("metadata") or {}).get("annotations") or {}
    spec = body.get("spec") or {}
    if kind == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    return ((spec.get("template") or {}).get("metadata") or {}).get("annotations") or {}


def check_deployment(doc: Doc, report: Report) -> None:
    spec = pod_spec(doc.body) or {}
    containers = spec.get("containers") or []
    if not containers:
        report.fail(f"deployment {name_of(doc)}", "no containers")
    for c in containers:
        label = f"deployment {name_of(doc)} container {c.get('name', '?')}"
        missing = [p for p in ("livenessProbe", "readinessProbe") if not c.get(p)]
        requests = (c.get("resources") or {}).get("requests") or {}
        missing += [f"resources.requests.{r}" for r in ("cpu", "memory") if r not in requests]
        report.expect(
            not missing,
            label,
            "liveness and readiness probes, cpu and memory requests",
            f"missing {', '.join(missing)}",
        )


# ---------------------------------------------------------------------------------------
# The auth-server containers and what they are given


@dataclass
class Target:
    """One place the auth-server binary runs: a compose service or a Kubernetes container."""

    label: str
    env: dict[str, tuple[str | None, str]] = field(default_factory=dict)  # name -> (value, source)
    argv: list[str] | None = None  # arguments after the binary; None = image default
    ports: dict[str, int] = field(default_factory=dict)  # port name -> number ("" if unnamed)
    probes: dict[str, tuple[str | None, Any]] = field(default_factory=dict)  # kind -> (path, port)
    annotations: dict = field(default_factory=dict)
    doc: Doc | None = None
    compose_service: str | None = None


def is_auth_image(image: Any) -> bool:
    if not isinstance(image, str):
        return False
    last = image.split("@")[0].rsplit("/", 1)[-1]
    return last.split(":")[0] == IMAGE_NAME


def dockerfile_info() -> tuple[dict[str, str], list[str] | None, list[int]]:
    """ENV settings, CMD (exec form) and EXPOSEd ports of the runtime stage."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    text = re.sub(r"\\\n", " ", text)
    env: dict[str, str] = {}
    cmd: list[str] | None = None
    expose: list[int] = []
    for line in text.splitlines():
        line = line.strip()
        if re.match(r"(?i)^FROM\s", line):
            env, cmd, expose = {}, None, []  # only the last stage ships
        elif m := re.match(r"(?i)^ENV\s+(.*)$", line):
            rest = m.group(1).strip()
            pairs = re.findall(r'([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S*)', rest)
            if pairs:
                env.update({k: v.strip('"') for k, v in pairs})
            else:
                key, _, value = rest.partition(" ")
                env[key] = value.strip()
        elif m := re.match(r"(?i)^CMD\s+(\[.*\])\s*$", line):
            cmd = yaml.safe_load(m.group(1))
        elif m := re.match(r"(?i)^EXPOSE\s+(.*)$", line):
            expose += [int(p.split("/")[0]) for p in m.group(1).split()]
    return env, cmd, expose


def dockerfile_healthcheck() -> list[str] | None:
    """The runtime stage's HEALTHCHECK command (exec form), if any."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    check: list[str] | None = None
    for line in text.splitlines():
        line = line.strip()
        if re.match(r"(?i)^FROM\s", line):
            check = None
        elif m := re.match(r"(?i)^HEALTHCHECK\s.*?\bCMD\s+(\[.*\])\s*$", line):
            check = yaml.safe_load(m.group(1))
    return check


def check_healthcheck(binary: Path, report: Report) -> None:
    """The image's HEALTHCHECK runs a subcommand the binary has, with arguments it accepts:
    against a port where nothing listens it must fail as a health check fails (exit 1), not as a
    usage error (exit 2)."""
    check = dockerfile_healthcheck()
    if check is None:
        report.fail("healthcheck", f"{rel(DOCKERFILE)} has no HEALTHCHECK in exec form")
        return
    if not check or not check[0].endswith("/auth-server"):
        report.fail("healthcheck", f"HEALTHCHECK runs {check[:1]}, not the auth-server binary")
        return
    if not binary.is_file():
        report.skip("healthcheck", "no binary to run it with")
        return
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C",
           "AUTH_URL": "http://127.0.0.1:9"}
    out = subprocess.run([str(binary), *check[1:]], capture_output=True, text=True, env=env,
                         timeout=60)
    report.expect(out.returncode == 1, "healthcheck",
                  f"`{' '.join(check[1:])}` parses and reports an unreachable service (exit 1)",
                  f"`{' '.join(check[1:])}` exited {out.returncode}: {out.stderr.strip()[:300]}")


def dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """The .dockerignore lines as (excludes, regex), in order: a later line overrides an earlier
    one, `!` re-includes. `**` spans directories, `*` and `?` do not."""
    patterns = []
    path = ROOT / ".dockerignore"
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        excludes = not line.startswith("!")
        glob = line.lstrip("!").strip().strip("/")
        rx = ""
        i = 0
        while i < len(glob):
            if glob.startswith("**/", i):
                rx, i = rx + "(?:.*/)?", i + 3
            elif glob.startswith("**", i):
                rx, i = rx + ".*", i + 2
            elif glob[i] == "*":
                rx, i = rx + "[^/]*", i + 1
            elif glob[i] == "?":
                rx, i = rx + "[^/]", i + 1
            else:
                rx, i = rx + re.escape(glob[i]), i + 1
        patterns.append((excludes, re.compile(rx + "(?:/.*)?")))
    return patterns


def check_build_context(report: Report) -> None:
    """Every repository file the build stages run, directly or through the scripts they run,
    exists and is sent with the build context."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    runs = [m.group(1) for m in re.finditer(r"(?im)^\s*RUN\s+(.*)$", text)]
    ref = re.compile(r"(?<![\w.-])((?:scripts|bench)/[\w./-]*\w)")
    direct = sorted({p for run in runs for p in ref.findall(run)})
    pending = list(direct)
    needed: set[str] = set()
    while pending:
        path = pending.pop()
        if path in needed:
            continue
        needed.add(path)
        file = ROOT / path
        if file.is_file() and file.suffix in (".sh", ".py", ""):
            pending += ref.findall(file.read_text(encoding="utf-8", errors="replace"))
    if not needed:
        report.ok("build context", "the image's build runs no repository script")
        return
    patterns = dockerignore_patterns()
    missing = sorted(p for p in needed if not (ROOT / p).exists())
    ignored = []
    for path in sorted(needed):
        excluded = False
        for excludes, rx in patterns:
            if rx.fullmatch(path):
                excluded = excludes
        if excluded:
            ignored.append(path)
    report.expect(not missing and not ignored, "build context",
                  f"{', '.join(direct)} and the {len(needed) - len(direct)} files it runs are in the context",
                  (f"missing from the repository: {missing}; " if missing else "")
                  + (f"left out by .dockerignore: {ignored}" if ignored else ""))


def find_config(docs: list[Doc], kind: str, name: str) -> Doc | None:
    for doc in docs:
        if is_k8s(doc) and doc.body.get("kind") == kind and name_of(doc) == name:
            return doc
    return None


def config_keys(doc: Doc) -> dict[str, str | None]:
    keys: dict[str, str | None] = {}
    for section in ("data", "stringData"):
        for k, v in (doc.body.get(section) or {}).items():
            keys[str(k)] = None if v is None else str(v)
    return keys


def k8s_targets(docs: list[Doc], report: Report) -> list[Target]:
    targets = []
    for doc in filter(is_k8s, docs):
        if doc.body.get("kind") not in WORKLOAD_KINDS:
            continue
        spec = pod_spec(doc.body) or {}
        for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            if not is_auth_image(c.get("image")):
                continue
            t = Target(
                label=f"{doc.body['kind']}/{name_of(doc)} container {c.get('name', '?')}",
                doc=doc,
                annotations=pod_annotations(doc.body),
            )
            for src in c.get("envFrom") or []:
                prefix = src.get("prefix", "")
                for ref_key, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                    ref = src.get(ref_key)
                    if not ref:
                        continue
                    cfg = find_config(docs, kind, ref.get("name"))
                    if cfg is None:
                        report.fail(
                            f"env {t.label}",
                            f"envFrom {kind} {ref.get('name')!r} is not defined under deploy/, "
                            "so its keys cannot be checked",
                        )
                        continue
                    for k, v in config_keys(cfg).items():
                        t.env[prefix + k] = (v, f"{kind}/{ref.get('name')} ({rel(cfg.path)})")
            for e in c.get("env") or []:
                name = e.get("name")
                value = e.get("value")
                source = "env"
                vf = e.get("valueFrom") or {}
                for ref_key, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                    ref = vf.get(ref_key)
                    if not ref:
                        continue
                    cfg = find_config(docs, kind, ref.get("name"))
                    source = f"env from {kind}/{ref.get('name')}"
                    if cfg is None:
                        report.fail(
                            f"env {t.label}",
                            f"{name}: {kind} {ref.get('name')!r} is not defined under deploy/",
                        )
                    elif ref.get("key") not in config_keys(cfg):
                        report.fail(
                            f"env {t.label}",
                            f"{name}: {kind} {ref.get('name')!r} has no key {ref.get('key')!r}",
                        )
                    else:
                        value = config_keys(cfg)[ref.get("key")]
                t.env[name] = (value, source)
            command = c.get("command")
            args = c.get("args")
            if command is not None:
                t.argv = [str(a) for a in command[1:]] + [str(a) for a in args or []]
            elif args is not None:
                t.argv = [str(a) for a in args]
            for p in c.get("ports") or []:
                t.ports[p.get("name", "")] = p.get("containerPort")
            for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                probe = c.get(kind)
                if probe and "httpGet" in probe:
                    t.probes[kind] = (probe["httpGet"].get("path"), probe["httpGet"].get("port"))
                elif probe:
                    t.probes[kind] = (None, None)
            targets.append(t)
    return targets


def compose_targets(docs: list[Doc], report: Report) -> list[Target]:
    targets = []
    for doc in filter(is_compose, docs):
        for svc_name, svc in doc.body["services"].items():
            svc = svc or {}
            build = svc.get("build")
            dockerfile = build.get("dockerfile", "") if isinstance(build, dict) else ""
            if not (is_auth_image(svc.get("image")) or dockerfile.endswith("deploy/Dockerfile")):
                continue
            t = Target(label=f"compose {rel(doc.path)} service {svc_name}", doc=doc,
                       compose_service=svc_name)
            env = svc.get("environment") or {}
            if isinstance(env, list):
                for item in env:
                    name, sep, value = str(item).partition("=")
                    t.env[name] = (value if sep else None, "environment")
            else:
                for name, value in env.items():
                    t.env[str(name)] = (None if value is None else str(value), "environment")
            if svc.get("env_file"):
                report.fail(f"env {t.label}", "env_file is not checked; use `environment`")
            cmd = svc.get("command")
            if isinstance(cmd, str):
                cmd = cmd.split()
            entry = svc.get("entrypoint")
            if entry is not None:
                entry = entry.split() if isinstance(entry, str) else list(entry)
                cmd = entry[1:] + (cmd or [])
            t.argv = None if cmd is None else [str(a) for a in cmd]
            for p in svc.get("expose") or []:
                t.ports[""] = int(str(p).split("/")[0])
            targets.append(t)
    return targets


def check_env(targets: list[Target], df_env: dict[str, str], binary: BinaryInfo | None,
              report: Report) -> None:
    sets = [(f"Dockerfile {rel(DOCKERFILE)}", {k: (v, "ENV") for k, v in df_env.items()})]
    sets += [(t.label, t.env) for t in targets]
    for label, env in sets:
        empty = sorted(n for n, (v, _) in env.items() if v == "")
        if empty:
            report.fail(f"env {label}", f"set to an empty string: {', '.join(empty)} "
                        "(leave a setting out instead)")
        if binary is None:
            report.fail(f"env {label}", "not checked: the binary's names are unknown")
            continue
        unknown = sorted(f"{n} ({src})" for n, (_, src) in env.items()
                         if n not in binary.env_names)
        report.expect(
            not unknown,
            f"env {label}",
            f"{len(env)} names, all read by the binary",
            f"not read by auth-server: {', '.join(unknown)}",
        )


# ---------------------------------------------------------------------------------------
# Ports and paths


def port_of(t: Target, df_env: dict[str, str]) -> int | None:
    """The port the binary listens on: `--port` (wins over the variable), PORT, the default."""
    value = None
    argv = t.argv or []
    for i, arg in enumerate(argv):
        if arg == "--port" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--port="):
            value = arg.partition("=")[2]
    if value is None:
        value = t.env.get("PORT", (None, ""))[0]
    if value is None:
        value = df_env.get("PORT", str(DEFAULT_PORT))
    try:
        return int(value)
    except ValueError:
        return None


def resolve_port(port: Any, t: Target) -> int | None:
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    return t.ports.get(port) if isinstance(port, str) else None


def check_ports_and_paths(docs: list[Doc], targets: list[Target], df_env: dict[str, str],
                          expose: list[int], report: Report) -> None:
    report.expect(
        expose == [int(df_env.get("PORT", DEFAULT_PORT))],
        f"port {rel(DOCKERFILE)}",
        f"EXPOSE {expose} matches PORT",
        f"EXPOSE {expose} but PORT={df_env.get('PORT', DEFAULT_PORT)}",
    )
    for t in targets:
        port = port_of(t, df_env)
        if port is None:
            report.fail(f"port {t.label}", f"PORT is not a number: {t.env.get('PORT')}")
            continue
        serves = t.argv is None or first_subcommand(t.argv, None) in (None, "serve")
        if serves and t.compose_service and not t.ports:
            report.ok(f"port {t.label}", "no ports declared (compose `expose` is optional)")
        elif serves:
            numbers = set(t.ports.values())
            report.expect(
                port in numbers,
                f"port {t.label}",
                f"container port {port} = PORT",
                f"PORT is {port} but the declared ports are {sorted(numbers) or 'none'}",
            )
        for kind, (path, probe_port) in t.probes.items():
            label = f"probe {t.label} {kind}"
            if path is None:
                report.fail(label, "not an httpGet probe")
                continue
            problems = []
            if path not in CONTRACT_PATHS:
                problems.append(f"{path} is not one of {', '.join(sorted(CONTRACT_PATHS))}")
            if resolve_port(probe_port, t) != port:
                problems.append(f"port {probe_port!r} is not PORT {port}")
            report.expect(not problems, label, f"GET {path} on {port}", "; ".join(problems))
        if t.annotations.get("prometheus.io/scrape") in ("true", True) or any(
            k.startswith("prometheus.io/") for k in t.annotations
        ):
            path = t.annotations.get("prometheus.io/path", "/metrics")
            scrape_port = t.annotations.get("prometheus.io/port")
            problems = []
            if path not in CONTRACT_PATHS:
                problems.append(f"path {path} is not a contract endpoint")
            if scrape_port is not None and str(scrape_port) != str(port):
                problems.append(f"prometheus.io/port {scrape_port} is not PORT {port}")
            report.expect(not problems, f"metrics {t.label}", f"{path} on {port}",
                          "; ".join(problems))

    # Services: targetPort must reach PORT of the pods they select.
    for doc in filter(is_k8s, docs):
        if doc.body.get("kind") != "Service":
            continue
        selector = (doc.body.get("spec") or {}).get("selector") or {}
        selected = [
            t for t in targets
            if t.doc is not None and t.doc.body.get("kind") != "Job" and selector and all(
                ((pod_labels(t.doc.body)).get(k) == v) for k, v in selector.items())
        ]
        if not selected:
            report.fail(f"service {name_of(doc)}", f"selector {selector} matches no auth-server pods")
            continue
        for sp in (doc.body.get("spec") or {}).get("ports") or []:
            for t in selected:
                target = sp.get("targetPort", sp.get("port"))
                port = port_of(t, df_env)
                report.expect(
                    resolve_port(target, t) == port,
                    f"service {name_of(doc)} port {sp.get('port')}",
                    f"targetPort {target!r} -> {port} ({t.label})",
                    f"targetPort {target!r} does not reach PORT {port} of {t.label}",
                )

    check_nginx(docs, targets, df_env, report)


def pod_labels(body: dict) -> dict:
    if body.get("kind") == "Pod":
        return (body.get("metadata") or {}).get("labels") or {}
    spec = body.get("spec") or {}
    return ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}


def check_nginx(docs: list[Doc], targets: list[Target], df_env: dict[str, str],
                report: Report) -> None:
    if not NGINX_CONF.exists():
        return
    text = NGINX_CONF.read_text(encoding="utf-8")
    text = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    upstreams = re.findall(r"\bset\s+\$\w+\s+([A-Za-z0-9_.-]+):(\d+)\s*;", text)
    upstreams += re.findall(r"\bproxy_pass\s+https?://([A-Za-z0-9_.-]+):(\d+)", text)
    upstreams += re.findall(r"\bserver\s+([A-Za-z0-9_.-]+):(\d+)", text)
    by_service = {t.compose_service: t for t in targets if t.compose_service}
    if not upstreams:
        report.fail(f"nginx {rel(NGINX_CONF)}", "no upstream host:port found")
    for host, port in upstreams:
        t = by_service.get(host)
        if t is None:
            report.fail(f"nginx {rel(NGINX_CONF)}", f"upstream {host} is no auth-server compose service")
            continue
        report.expect(
            int(port) == port_of(t, df_env),
            f"nginx {rel(NGINX_CONF)} upstream {host}:{port}",
            f"PORT of {t.label}",
            f"{t.label} listens on {port_of(t, df_env)}",
        )


# ---------------------------------------------------------------------------------------
# Subcommands


def first_subcommand(argv: list[str], binary: BinaryInfo | None) -> str | None:
    """The first positional argument, skipping global flags and their values."""
    value_flags = binary.value_flags if binary else set()
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg.startswith("-"):
            skip = "=" not in arg and arg in value_flags
            continue
        return arg
    return None


def check_commands(targets: list[Target], df_cmd: list[str] | None, binary: BinaryInfo | None,
                   report: Report) -> None:
    runs = [(f"Dockerfile {rel(DOCKERFILE)} CMD", df_cmd)]
    runs += [(t.label, t.argv) for t in targets]
    for label, argv in runs:
        if argv is None:
            report.ok(f"command {label}", f"image default {df_cmd}")
            continue
        if binary is None:
            report.fail(f"command {label}", "not checked: the binary's subcommands are unknown")
            continue
        sub = first_subcommand(argv, binary)
        if sub is None:
            report.ok(f"command {label}", f"no subcommand: serve (the default), args {argv}")
            continue
        report.expect(
            sub in binary.subcommands,
            f"command {label}",
            f"`{sub}` is a subcommand",
            f"`{sub}` is not a subcommand of auth-server ({', '.join(sorted(binary.subcommands))})",
        )


# ---------------------------------------------------------------------------------------


def main() -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `check-deploy.py | head` ends quietly
    binary = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_BINARY
    if len(sys.argv) > 2 or binary.name in ("-h", "--help"):
        print(__doc__)
        return 2
    report = Report()
    info = read_binary(binary.resolve(), report)
    docs = load_yaml(report)
    check_k8s_shape(docs, report)
    df_env, df_cmd, expose = dockerfile_info()
    targets = compose_targets(docs, report) + k8s_targets(docs, report)
    if not targets:
        report.fail("targets", "no auth-server container found in deploy/")
    check_env(targets, df_env, info, report)
    check_ports_and_paths(docs, targets, df_env, expose, report)
    check_commands(targets, df_cmd, info, report)
    check_healthcheck(binary.resolve(), report)
    check_build_context(report)
    if report.failed:
        print(f"check-deploy: {report.failed} check(s) failed")
        return 1
    print("check-deploy: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
