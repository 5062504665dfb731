# A JupyterHub configuration for a class taking the course: the parts that matter to the course.
# tests/test_hub.py loads this very file (and replaces only authentication, spawner and ports with
# test stand-ins), so what docs/instructors.md shows is what the test runs.
#
#   jupyterhub -f jupyterhub_config.py
#
# Needs, in the learners' environment: the course (`pip install async-sqlalchemy-course` or the
# repository), nbgitpuller, and `COURSE_DATABASE_URL` for the class's PostgreSQL server.
import os

c = get_config()  # noqa: F821 (JupyterHub provides get_config)

# --- the course's environment, for every learner's server and kernels -------------------------
# One PostgreSQL database for the class. Every notebook works in its own schema named after the
# learner: the course takes the learner's name from COURSE_USER, else from JUPYTERHUB_USER (which
# the hub sets), so servers that all run as one system user (Zero to JupyterHub: `jovyan`) are
# still told apart.
c.Spawner.environment = {
    "COURSE_DATABASE_URL": os.environ.get(
        "COURSE_DATABASE_URL", "postgresql+asyncpg://course:PASSWORD@db.internal:5432/course_class"
    ),
}

# Open JupyterLab; the nbgitpuller link (docs/instructors.md) then opens lesson 00.
c.Spawner.default_url = "/lab"

# Lesson 09 opens up to 9 connections per kernel: stop idle servers so their connections close.
# (jupyterhub-idle-culler does this on a real hub; see docs/instructors.md, "Connections".)
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 60

# --- who may log in: replace with your authenticator (GitHub, LTI, LDAP, ...) ------------------
# c.JupyterHub.authenticator_class = "github"
# c.Authenticator.allowed_users = {"ann", "bob"}
# c.Authenticator.admin_users = {"instructor"}
