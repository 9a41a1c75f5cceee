# Sweeps (target results/sweeps/<name>.md): config/sweeps/<name>.yaml run by c2am.sweep, each point x seed a run
# of this workflow in sweeps/<name>/p<i>/seed<k>/, jobs shared between points. The figure is an entry of the
# report: snakemake --report report.html results/sweeps/<name>.png. A local rule: it only drives the points' runs
# (on a cluster, pass a profile to them: python -m c2am.sweep <file> --parallel K -- --profile profiles/slurm).


localrules:
    sweep,


rule sweep:
    input:
        "config/sweeps/{name}.yaml",
    output:
        table="results/sweeps/{name}.md",
        tsv="results/sweeps/{name}.tsv",
        figure=report(
            "results/sweeps/{name}.png",
            caption="../report/sweep.rst",
            category="8. Sweeps",
            subcategory="{name}",
        ),
    log:
        "logs/sweep/{name}.log",
    conda:
        ENV
    threads: rule_threads("sweep")
    resources:
        **rule_resources("sweep"),
    shell:
        "python -m c2am.sweep {input} --cores {threads} --root . 2> {log}"
