"""The index: packages, builds, publications, provenance, images, package sets, plans

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('package_sets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('digest', sa.String(length=71), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('digest')
    )
    op.create_table('packages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('version', sa.String(length=100), nullable=False),
    sa.Column('fileset', sa.String(length=71), nullable=False),
    sa.Column('archive', sa.String(length=71), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name', 'version', 'fileset')
    )
    with op.batch_alter_table('packages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_packages_fileset'), ['fileset'], unique=False)
        batch_op.create_index(batch_op.f('ix_packages_name'), ['name'], unique=False)

    op.create_table('plans',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('commit', sa.String(length=40), nullable=False),
    sa.Column('started', sa.DateTime(), nullable=False),
    sa.Column('forced', sa.String(length=200), nullable=True),
    sa.Column('dependents', sa.Boolean(), nullable=False),
    sa.Column('build_url', sa.String(length=300), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('plans', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_plans_commit'), ['commit'], unique=False)

    op.create_table('provenance',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('subject', sa.String(length=71), nullable=False),
    sa.Column('bundle', sa.String(length=71), nullable=False),
    sa.Column('signer', sa.String(length=300), nullable=False),
    sa.Column('verified', sa.Boolean(), nullable=True),
    sa.Column('verified_at', sa.DateTime(), nullable=True),
    sa.Column('problem', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('subject', 'bundle')
    )
    with op.batch_alter_table('provenance', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_provenance_subject'), ['subject'], unique=False)

    op.create_table('builds',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('package_id', sa.Integer(), nullable=False),
    sa.Column('build_key', sa.String(length=71), nullable=False),
    sa.Column('recipe_repo', sa.String(length=400), nullable=False),
    sa.Column('recipe_commit', sa.String(length=40), nullable=False),
    sa.Column('recipe_path', sa.String(length=300), nullable=False),
    sa.Column('builder', sa.String(length=300), nullable=False),
    sa.Column('worker', sa.String(length=100), nullable=False),
    sa.Column('started', sa.String(length=40), nullable=False),
    sa.Column('finished', sa.String(length=40), nullable=False),
    sa.Column('result', sa.String(length=20), nullable=False),
    sa.Column('record', sa.Text(), nullable=True),
    sa.Column('plan_id', sa.Integer(), nullable=True),
    sa.Column('build_url', sa.String(length=300), nullable=False),
    sa.Column('log_url', sa.String(length=300), nullable=False),
    sa.ForeignKeyConstraint(['package_id'], ['packages.id'], ),
    sa.ForeignKeyConstraint(['plan_id'], ['plans.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('builds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_builds_build_key'), ['build_key'], unique=False)
        batch_op.create_index(batch_op.f('ix_builds_package_id'), ['package_id'], unique=False)

    op.create_table('images',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('repository', sa.String(length=300), nullable=False),
    sa.Column('tag', sa.String(length=128), nullable=False),
    sa.Column('digest', sa.String(length=71), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('version', sa.String(length=100), nullable=False),
    sa.Column('set_id', sa.Integer(), nullable=True),
    sa.Column('previous', sa.String(length=71), nullable=True),
    sa.Column('indexed', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['set_id'], ['package_sets.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('repository', 'tag')
    )
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_images_digest'), ['digest'], unique=False)

    op.create_table('plan_packages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('plan_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('wave', sa.Integer(), nullable=False),
    sa.Column('plan_key', sa.String(length=71), nullable=False),
    sa.Column('requires', sa.Text(), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('worker', sa.String(length=100), nullable=True),
    sa.Column('build_url', sa.String(length=300), nullable=True),
    sa.Column('log_url', sa.String(length=300), nullable=True),
    sa.Column('updated', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['plan_id'], ['plans.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('plan_id', 'name')
    )
    with op.batch_alter_table('plan_packages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_plan_packages_name'), ['name'], unique=False)
        batch_op.create_index(batch_op.f('ix_plan_packages_plan_id'), ['plan_id'], unique=False)

    op.create_table('build_inputs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('build_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('version', sa.String(length=100), nullable=False),
    sa.Column('digest', sa.String(length=71), nullable=False),
    sa.ForeignKeyConstraint(['build_id'], ['builds.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('build_inputs', schema=None) as batch_op:
        batch_op.create_index('build_inputs_by_package', ['name', 'version'], unique=False)
        batch_op.create_index(batch_op.f('ix_build_inputs_build_id'), ['build_id'], unique=False)

    op.create_table('image_packages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('version', sa.String(length=100), nullable=False),
    sa.Column('fileset', sa.String(length=71), nullable=False),
    sa.Column('overridden', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('image_packages', schema=None) as batch_op:
        batch_op.create_index('image_packages_by_name', ['name', 'version'], unique=False)
        batch_op.create_index(batch_op.f('ix_image_packages_image_id'), ['image_id'], unique=False)

    op.create_table('publications',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('package_id', sa.Integer(), nullable=False),
    sa.Column('build_id', sa.Integer(), nullable=True),
    sa.Column('repository', sa.String(length=300), nullable=False),
    sa.Column('tag', sa.String(length=128), nullable=False),
    sa.Column('manifest', sa.String(length=71), nullable=False),
    sa.Column('published', sa.DateTime(), nullable=False),
    sa.Column('requires', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['build_id'], ['builds.id'], ),
    sa.ForeignKeyConstraint(['package_id'], ['packages.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('repository', 'tag')
    )
    with op.batch_alter_table('publications', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_publications_manifest'), ['manifest'], unique=False)
        batch_op.create_index('publications_by_package', ['package_id', 'published'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('publications', schema=None) as batch_op:
        batch_op.drop_index('publications_by_package')
        batch_op.drop_index(batch_op.f('ix_publications_manifest'))

    op.drop_table('publications')
    with op.batch_alter_table('image_packages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_image_packages_image_id'))
        batch_op.drop_index('image_packages_by_name')

    op.drop_table('image_packages')
    with op.batch_alter_table('build_inputs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_build_inputs_build_id'))
        batch_op.drop_index('build_inputs_by_package')

    op.drop_table('build_inputs')
    with op.batch_alter_table('plan_packages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_plan_packages_plan_id'))
        batch_op.drop_index(batch_op.f('ix_plan_packages_name'))

    op.drop_table('plan_packages')
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_images_digest'))

    op.drop_table('images')
    with op.batch_alter_table('builds', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_builds_package_id'))
        batch_op.drop_index(batch_op.f('ix_builds_build_key'))

    op.drop_table('builds')
    with op.batch_alter_table('provenance', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_provenance_subject'))

    op.drop_table('provenance')
    with op.batch_alter_table('plans', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_plans_commit'))

    op.drop_table('plans')
    with op.batch_alter_table('packages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_packages_name'))
        batch_op.drop_index(batch_op.f('ix_packages_fileset'))

    op.drop_table('packages')
    op.drop_table('package_sets')
