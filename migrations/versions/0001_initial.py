"""initial schema: base models, artifacts, runs, versions, edit requests, deltas, probe
results, statistics cache, audit findings

Revision ID: 0001
Revises: 
Create Date: 2026-11-21 21:25:53.960754
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('artifact',
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("kind IN ('delta', 'keyframe', 'stats', 'other')", name=op.f('ck_artifact_kind')),
    sa.PrimaryKeyConstraint('digest', name=op.f('pk_artifact'))
    )
    op.create_table('base_model',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_base_model')),
    sa.UniqueConstraint('fingerprint', name=op.f('uq_base_model_fingerprint'))
    )
    op.create_table('run',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('base_model_id', sa.Integer(), nullable=False),
    sa.Column('method', sa.String(length=64), nullable=False),
    sa.Column('hparams', sa.JSON(), nullable=False),
    sa.Column('stream_name', sa.Text(), nullable=False),
    sa.Column('stream_digest', sa.String(length=64), nullable=False),
    sa.Column('stream_kind', sa.String(length=32), nullable=False),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('start_version_id', sa.Integer(), nullable=False),
    sa.Column('head_version_id', sa.Integer(), nullable=False),
    sa.Column('step_count', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("status IN ('running', 'done', 'failed', 'interrupted', 'stopped')", name=op.f('ck_run_status')),
    sa.ForeignKeyConstraint(['base_model_id'], ['base_model.id'], name=op.f('fk_run_base_model_id_base_model')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_run'))
    )
    with op.batch_alter_table('run', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_run_base_model_id'), ['base_model_id'], unique=False)

    op.create_table('stats_cache',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model_fingerprint', sa.String(length=64), nullable=False),
    sa.Column('layer', sa.String(length=255), nullable=False),
    sa.Column('corpus_digest', sa.String(length=64), nullable=False),
    sa.Column('sample_count', sa.Integer(), nullable=False),
    sa.Column('artifact_digest', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['artifact_digest'], ['artifact.digest'], name=op.f('fk_stats_cache_artifact_digest_artifact')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stats_cache')),
    sa.UniqueConstraint('model_fingerprint', 'layer', 'corpus_digest', 'sample_count', name='uq_stats_cache_key')
    )
    with op.batch_alter_table('stats_cache', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stats_cache_artifact_digest'), ['artifact_digest'], unique=False)

    op.create_table('version',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('base_model_id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('step', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('tensor_fingerprints', sa.JSON(), nullable=False),
    sa.Column('n_requests', sa.Integer(), nullable=False),
    sa.Column('diagnostics', sa.JSON(), nullable=False),
    sa.Column('stats_used', sa.JSON(), nullable=False),
    sa.Column('wall_time_s', sa.Float(), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("kind IN ('base', 'edit', 'revert', 'reset', 'branch')", name=op.f('ck_version_kind')),
    sa.ForeignKeyConstraint(['base_model_id'], ['base_model.id'], name=op.f('fk_version_base_model_id_base_model')),
    sa.ForeignKeyConstraint(['parent_id'], ['version.id'], name=op.f('fk_version_parent_id_version')),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_version_run_id_run')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_version'))
    )
    with op.batch_alter_table('version', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_version_base_model_id_kind'), ['base_model_id', 'kind'], unique=False)
        batch_op.create_index(batch_op.f('ix_version_parent_id'), ['parent_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_version_run_id_step'), ['run_id', 'step'], unique=False)

    # run <-> version reference each other: the run's version keys are added once version exists
    # (batch mode: SQLite cannot ALTER TABLE ADD CONSTRAINT, so it copies the still-empty table)
    with op.batch_alter_table('run', schema=None) as batch_op:
        batch_op.create_foreign_key(batch_op.f('fk_run_start_version_id_version'), 'version',
                                    ['start_version_id'], ['id'])
        batch_op.create_foreign_key(batch_op.f('fk_run_head_version_id_version'), 'version',
                                    ['head_version_id'], ['id'])

    op.create_table('audit_finding',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=True),
    sa.Column('metric', sa.String(length=128), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('evidence', sa.JSON(), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_audit_finding_run_id_run'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['version_id'], ['version.id'], name=op.f('fk_audit_finding_version_id_version')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_finding'))
    )
    with op.batch_alter_table('audit_finding', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_finding_run_id'), ['run_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_finding_version_id'), ['version_id'], unique=False)

    op.create_table('delta',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('tensor', sa.String(length=255), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('artifact_digest', sa.String(length=64), nullable=False),
    sa.Column('shape', sa.JSON(), nullable=False),
    sa.Column('rank', sa.Integer(), nullable=True),
    sa.Column('norm', sa.Float(), nullable=False),
    sa.Column('nbytes', sa.BigInteger(), nullable=False),
    sa.Column('meta', sa.JSON(), nullable=False),
    sa.CheckConstraint("kind IN ('low_rank', 'dense', 'sparse', 'adapter', 'keyframe')", name=op.f('ck_delta_kind')),
    sa.ForeignKeyConstraint(['artifact_digest'], ['artifact.digest'], name=op.f('fk_delta_artifact_digest_artifact')),
    sa.ForeignKeyConstraint(['version_id'], ['version.id'], name=op.f('fk_delta_version_id_version'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_delta')),
    sa.UniqueConstraint('version_id', 'position', name=op.f('uq_delta_version_id_position'))
    )
    with op.batch_alter_table('delta', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_delta_artifact_digest'), ['artifact_digest'], unique=False)
        batch_op.create_index(batch_op.f('ix_delta_tensor'), ['tensor'], unique=False)

    op.create_table('edit_request',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('prompt', sa.Text(), nullable=False),
    sa.Column('target_new', sa.Text(), nullable=False),
    sa.Column('target_old', sa.Text(), nullable=True),
    sa.Column('relation', sa.String(length=64), nullable=True),
    sa.Column('case_id', sa.String(length=128), nullable=True),
    sa.Column('group', sa.String(length=128), nullable=True),
    sa.Column('role', sa.String(length=32), nullable=True),
    sa.Column('extra', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['version_id'], ['version.id'], name=op.f('fk_edit_request_version_id_version'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_edit_request')),
    sa.UniqueConstraint('version_id', 'position', name=op.f('uq_edit_request_version_id_position'))
    )
    with op.batch_alter_table('edit_request', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_edit_request_group'), ['group'], unique=False)
        batch_op.create_index(batch_op.f('ix_edit_request_subject'), ['subject'], unique=False)

    op.create_table('probe_result',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.Column('step', sa.Integer(), nullable=False),
    sa.Column('suite', sa.String(length=64), nullable=False),
    sa.Column('metric', sa.String(length=64), nullable=False),
    sa.Column('against', sa.String(length=16), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("against IN ('base', 'previous', 'none')", name=op.f('ck_probe_result_against')),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_probe_result_run_id_run')),
    sa.ForeignKeyConstraint(['version_id'], ['version.id'], name=op.f('fk_probe_result_version_id_version'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_probe_result'))
    )
    with op.batch_alter_table('probe_result', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_probe_result_run_id_suite_metric_step'), ['run_id', 'suite', 'metric', 'step'], unique=False)
        batch_op.create_index(batch_op.f('ix_probe_result_version_id'), ['version_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('probe_result', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_probe_result_version_id'))
        batch_op.drop_index(batch_op.f('ix_probe_result_run_id_suite_metric_step'))

    op.drop_table('probe_result')
    with op.batch_alter_table('edit_request', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_edit_request_subject'))
        batch_op.drop_index(batch_op.f('ix_edit_request_group'))

    op.drop_table('edit_request')
    with op.batch_alter_table('delta', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_delta_tensor'))
        batch_op.drop_index(batch_op.f('ix_delta_artifact_digest'))

    op.drop_table('delta')
    with op.batch_alter_table('audit_finding', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_finding_version_id'))
        batch_op.drop_index(batch_op.f('ix_audit_finding_run_id'))

    op.drop_table('audit_finding')
    with op.batch_alter_table('version', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_version_run_id_step'))
        batch_op.drop_index(batch_op.f('ix_version_parent_id'))
        batch_op.drop_index(batch_op.f('ix_version_base_model_id_kind'))

    with op.batch_alter_table('run', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_run_head_version_id_version'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_run_start_version_id_version'), type_='foreignkey')

    op.drop_table('version')
    with op.batch_alter_table('stats_cache', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stats_cache_artifact_digest'))

    op.drop_table('stats_cache')
    with op.batch_alter_table('run', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_run_base_model_id'))

    op.drop_table('run')
    op.drop_table('base_model')
    op.drop_table('artifact')
