# Per-object history: the order keys of versions come from the database (HistoryTick), and the index
# answers "does this object have a version yet?" by primary key. Numbered 0007 after the branches that add
# 0005 (storage targets) and 0006; it depends on 0004 only, and the merge fixes the chain.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('dbs_admin', '0005_backupcopy_state'),
    ]

    operations = [
        migrations.CreateModel(
            name='HistoryTick',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
            ],
            options={
                'verbose_name': 'history order tick',
            },
        ),
        migrations.AddIndex(
            model_name='historyversion',
            index=models.Index(fields=['model_label', 'object_pk'], name='dbs_hist_obj_pk'),
        ),
    ]
